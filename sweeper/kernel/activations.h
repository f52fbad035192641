/*
 * Hidden activations, output heads and losses, per lane. Part of stacked_mlp.c.
 *
 * Each follows PyTorch's formula (forward and backward), so that in float64 a member matches
 * torch's autograd to rounding error: ReLU (fused into the layer products, layers.h), tanh,
 * sigmoid, GELU in its exact erf form (``approximate='none'``); an identity head or obesity's
 * ``scale * sigmoid``; mean squared error (mean over rows and outputs) or cross-entropy (softmax
 * over the outputs, class indices as REAL targets, mean over rows). tanh, erf and log go lane by
 * lane through the C library (in double), the same on every vector width.
 */
#ifndef SWEEPER_ACTIVATIONS_H
#define SWEEPER_ACTIVATIONS_H

#include "lanes.h"

/* Codes of the hidden activations, the heads and the losses (sweeper.kernel.lanes). */
enum { ACT_RELU = 0, ACT_TANH = 1, ACT_SIGMOID = 2, ACT_GELU = 3 };
enum { HEAD_IDENTITY = 0, HEAD_SCALED_SIGMOID = 1 };
enum { LOSS_MSE = 0, LOSS_CROSS_ENTROPY = 1 };

#define PER_LANE(fn, v)                                                           \
    do {                                                                          \
        for (int64_t l_ = 0; l_ < LANES; l_++) (v)[l_] = (REAL)fn((double)(v)[l_]); \
    } while (0)

static inline vec vsigmoid(vec z) { return 1 / (1 + vexp(-z)); }

/* Elementwise max of two vectors (NaN handling is irrelevant: a NaN loss diverges anyway). */
static inline vec vmax(vec a, vec b) { return blend(a > b, a, b); }

/* out[j] = act(out[j]) for n vectors of pre-activations (ReLU is fused into `linear`); GELU
 * keeps its inputs in pre (its backward needs them). */
static void activate(int64_t act, vec *out, vec *pre, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        vec z = out[j];
        if (act == ACT_TANH) {
            PER_LANE(tanh, z);
            out[j] = z;
        } else if (act == ACT_SIGMOID) {
            out[j] = vsigmoid(z);
        } else if (act == ACT_GELU) {
            pre[j] = z;
            vec e = z * (REAL)M_SQRT1_2;
            PER_LANE(erf, e);
            out[j] = z * (REAL)0.5 * (1 + e);
        }
    }
}

/* back[j] *= act'(.) given the layer's output h (and, for GELU, its input pre): torch's
 * tanh_backward, sigmoid_backward and gelu_backward. */
static void activate_backward(int64_t act, vec *back, const vec *h, const vec *pre, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        if (act == ACT_TANH) {
            back[j] = back[j] * (1 - h[j] * h[j]);
        } else if (act == ACT_SIGMOID) {
            back[j] = back[j] * (1 - h[j]) * h[j];
        } else if (act == ACT_GELU) {
            const vec x = pre[j];
            vec cdf = x * (REAL)M_SQRT1_2;
            PER_LANE(erf, cdf);
            cdf = (REAL)0.5 * (1 + cdf);
            const vec pdf = vexp((REAL)-0.5 * x * x) * (REAL)(M_2_SQRTPI * M_SQRT1_2 * 0.5);
            back[j] = back[j] * (cdf + x * pdf);
        }
    }
}

/*
 * The loss of `batch` rows of outputs h [batch][outs] (after the head) against targets
 * ([batch][outs] for MSE, [batch] class indices for cross-entropy), per lane, and d loss / d z
 * of the output layer into delta [batch][outs].
 */
static vec head_loss(int64_t head, int64_t loss, REAL scale, const vec *h, const vec *targets,
                     vec *delta, int64_t batch, int64_t outs) {
    vec sum = zero();
    if (loss == LOSS_CROSS_ENTROPY) {
        const vec inv_batch = splat((REAL)1 / (REAL)batch);
        for (int64_t b = 0; b < batch; b++) {
            const vec *z = h + b * outs;
            vec *d = delta + b * outs;
            const vec t = targets[b];
            vec top = z[0];
            for (int64_t o = 1; o < outs; o++) top = vmax(top, z[o]);
            vec total = zero(), picked = zero();
            for (int64_t o = 0; o < outs; o++) {
                d[o] = vexp(z[o] - top);
                total += d[o];
                picked += blend(t == (REAL)o, z[o], zero());
            }
            vec lse = total;
            PER_LANE(log, lse);
            sum += (lse + top) - picked;
            const vec inv = 1 / total;
            for (int64_t o = 0; o < outs; o++)
                d[o] = (d[o] * inv - blend(t == (REAL)o, splat(1), zero())) * inv_batch;
        }
        return sum / (REAL)batch;
    }
    const int64_t count = batch * outs;
    if (head == HEAD_SCALED_SIGMOID) {
        /* Through scale * sigmoid: d out / d z = scale * s (1 - s). */
        const vec coef = splat((REAL)2 * scale / (REAL)count);
        for (int64_t j = 0; j < count; j++) {
            const vec s = h[j];
            const vec diff = s * scale - targets[j];
            sum += diff * diff;
            delta[j] = diff * coef * s * (splat(1) - s);
        }
    } else {
        const vec coef = splat((REAL)2 / (REAL)count);
        for (int64_t j = 0; j < count; j++) {
            const vec diff = h[j] - targets[j];
            sum += diff * diff;
            delta[j] = diff * coef;
        }
    }
    return sum / (REAL)count;
}

#endif
