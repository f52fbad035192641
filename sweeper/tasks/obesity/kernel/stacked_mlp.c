/*
 * Forward and backward of many small MLPs at once, one SIMD lane per member.
 *
 * sweeper's batched executor trains a group of tiny models (the obesity MLP has 1,009
 * parameters) as one. In PyTorch that is a batched matrix product per layer, and MKL's batched
 * GEMM spends about a microsecond per member per product on 32 x 18 x 18 matrices, which bounds
 * the whole executor. Here members are interleaved instead: a block of LANES members (8 in
 * float32, 4 in float64, one 256-bit vector) stores each parameter and each activation as one
 * vector, so every multiply-add of the forward and backward pass is one vector instruction for
 * LANES members, accumulating in registers. No number of one member ever meets another's (a
 * member that diverges to NaN leaves the others untouched), and the math is PyTorch's:
 * nn.Linear, ReLU (NaN passes through), threshold_backward, scale * sigmoid, mean squared error.
 *
 * Compiled twice by sweeper.tasks.obesity.kernel, with -DREAL=float and -DREAL=double.
 * Layout, per block of LANES members (vectors of LANES numbers):
 *   params, grad  [P] vectors: per layer, weight [in][out] then bias [out]
 *   x             [rows][features] numbers, shared by all members
 *   y             [rows] numbers
 *   idx           row numbers, each member its own mini-batch: member m's batch is
 *                 idx[m * idx_stride + 0 .. batch - 1]
 *   work          batch * (sum of widths + 2 * max width) vectors of scratch
 */
#include <math.h>
#include <stdint.h>

#ifndef REAL
#define REAL float
#endif

#define VEC_BYTES 32
#define LANES ((int64_t)(VEC_BYTES / sizeof(REAL)))
/* Accumulators held in registers at once (of 16 on AVX2; the rest hold operands). */
#define TILE 6

/* aligned(sizeof(REAL)): loads and stores need not be 32-byte aligned. */
typedef REAL vec __attribute__((vector_size(VEC_BYTES), aligned(sizeof(REAL))));
/* The integer vector a comparison of two vecs gives (lanes of all ones or all zeros). */
#define IVEC_OF(r) __typeof__((r) < (r))
/* expf for float, exp for double: the sigmoid in the members' own precision. */
#define EXP(v) _Generic((v), float: expf, default: exp)(v)

static inline vec zero(void) { return (vec){0}; }

static inline vec splat(REAL v) { return zero() + v; }

/* max(z, 0) that keeps NaN, as torch.relu does. */
static inline vec relu(vec z) {
    IVEC_OF(z) negative = z < zero();
    return (vec)((IVEC_OF(z))z & ~negative);
}

/* grad where h > 0, else 0: aten::threshold_backward(grad, h, 0). */
static inline vec relu_backward(vec grad, vec h) {
    IVEC_OF(h) off = h <= zero();
    return (vec)((IVEC_OF(grad))grad & ~off);
}

/* out[b][o] = bias[o] + sum_i h[b][i] * w[i][o], for a batch of `batch` rows. */
static void linear(const vec *h, const vec *w, const vec *bias, vec *out,
                   int64_t batch, int64_t in, int64_t n_out) {
    for (int64_t b = 0; b < batch; b++) {
        const vec *hb = h + b * in;
        vec *ob = out + b * n_out;
        int64_t o = 0;
        for (; o + TILE <= n_out; o += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = bias[o + t];
            for (int64_t i = 0; i < in; i++) {
                const vec hv = hb[i];
                const vec *wi = w + i * n_out + o;
                for (int t = 0; t < TILE; t++) acc[t] += hv * wi[t];
            }
            for (int t = 0; t < TILE; t++) ob[o + t] = acc[t];
        }
        for (; o < n_out; o++) {
            vec acc = bias[o];
            for (int64_t i = 0; i < in; i++) acc += hb[i] * w[i * n_out + o];
            ob[o] = acc;
        }
    }
}

/* gw[i][o] = sum_b h[b][i] * delta[b][o]; gb[o] = sum_b delta[b][o]. */
static void linear_grads(const vec *h, const vec *delta, vec *gw, vec *gb,
                         int64_t batch, int64_t in, int64_t n_out) {
    for (int64_t i = 0; i < in; i++) {
        int64_t o = 0;
        for (; o + TILE <= n_out; o += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = zero();
            for (int64_t b = 0; b < batch; b++) {
                const vec hv = h[b * in + i];
                const vec *db = delta + b * n_out + o;
                for (int t = 0; t < TILE; t++) acc[t] += hv * db[t];
            }
            for (int t = 0; t < TILE; t++) gw[i * n_out + o + t] = acc[t];
        }
        for (; o < n_out; o++) {
            vec acc = zero();
            for (int64_t b = 0; b < batch; b++) acc += h[b * in + i] * delta[b * n_out + o];
            gw[i * n_out + o] = acc;
        }
    }
    for (int64_t o = 0; o < n_out; o++) {
        vec acc = zero();
        for (int64_t b = 0; b < batch; b++) acc += delta[b * n_out + o];
        gb[o] = acc;
    }
}

/* back[b][i] = relu_backward(sum_o delta[b][o] * w[i][o], h[b][i]): the previous layer's delta. */
static void linear_back(const vec *delta, const vec *w, const vec *h, vec *back,
                        int64_t batch, int64_t in, int64_t n_out) {
    for (int64_t b = 0; b < batch; b++) {
        const vec *db = delta + b * n_out;
        int64_t i = 0;
        for (; i + TILE <= in; i += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = zero();
            for (int64_t o = 0; o < n_out; o++) {
                const vec dv = db[o];
                for (int t = 0; t < TILE; t++) acc[t] += dv * w[(i + t) * n_out + o];
            }
            for (int t = 0; t < TILE; t++)
                back[b * in + i + t] = relu_backward(acc[t], h[b * in + i + t]);
        }
        for (; i < in; i++) {
            vec acc = zero();
            for (int64_t o = 0; o < n_out; o++) acc += db[o] * w[i * n_out + o];
            back[b * in + i] = relu_backward(acc, h[b * in + i]);
        }
    }
}

/*
 * Per-member mean squared error of `scale * sigmoid(MLP(x))` against y over each member's rows,
 * and, when grad is not NULL, its gradient with respect to params.
 *
 * widths: depth + 1 layer widths (widths[0] = features, widths[depth] = 1).
 * idx, idx_stride: member m uses rows idx[m * idx_stride + b]; idx NULL means every member
 * uses rows 0 .. batch - 1 (evaluation on a shared set).
 * loss: [blocks * LANES] numbers.
 */
void stacked_mlp_loss_grad(int64_t blocks, int64_t depth, const int64_t *widths,
                           int64_t n_params, const REAL *params, REAL *grad, const REAL *x,
                           const REAL *y, const int64_t *idx, int64_t idx_stride,
                           int64_t batch, REAL scale,
                           REAL *loss, REAL *work) {
    int64_t total_width = 0, max_width = 0;
    for (int64_t k = 0; k <= depth; k++) {
        total_width += widths[k];
        if (widths[k] > max_width) max_width = widths[k];
    }
    const int64_t features = widths[0];
    vec *acts = (vec *)work;               /* per layer k: [batch][widths[k]] */
    vec *delta = acts + batch * total_width;  /* [batch][max width] */
    vec *delta_prev = delta + batch * max_width;

    for (int64_t blk = 0; blk < blocks; blk++) {
        const vec *p = (const vec *)params + blk * n_params;
        vec *g = grad ? (vec *)grad + blk * n_params : 0;
        REAL *targets = (REAL *)delta; /* gathered y, [batch][LANES], before delta is used */

        /* Gather each member's rows: acts[0][b][f] lane l = x[row][f]. */
        for (int64_t l = 0; l < LANES; l++) {
            const int64_t *rows = idx ? idx + (blk * LANES + l) * idx_stride : 0;
            for (int64_t b = 0; b < batch; b++) {
                const int64_t row = rows ? rows[b] : b;
                REAL *a = (REAL *)(acts + b * features);
                for (int64_t f = 0; f < features; f++) a[f * LANES + l] = x[row * features + f];
                targets[b * LANES + l] = y[row];
            }
        }

        /* Forward, keeping every layer's output (after its activation). */
        const vec *h = acts, *w = p;
        vec *out = acts + batch * features;
        for (int64_t k = 0; k < depth; k++) {
            const int64_t in = widths[k], n_out = widths[k + 1];
            linear(h, w, w + in * n_out, out, batch, in, n_out);
            if (k < depth - 1) {
                for (int64_t j = 0; j < batch * n_out; j++) out[j] = relu(out[j]);
            } else {
                for (int64_t j = 0; j < batch * n_out; j++)
                    for (int64_t l = 0; l < LANES; l++) {
                        REAL z = out[j][l];
                        out[j][l] = (REAL)1 / ((REAL)1 + EXP(-z));
                    }
            }
            w += in * n_out + n_out;
            h = out;
            out += batch * n_out;
        }

        /* Loss, and d loss / d z of the output layer (through scale * sigmoid). */
        vec sum = zero();
        const vec coef = splat((REAL)2 * scale / (REAL)batch);
        for (int64_t b = 0; b < batch; b++) {
            const vec s = h[b];
            const vec diff = s * scale - ((vec *)targets)[b];
            sum += diff * diff;
            delta[b] = diff * coef * s * (splat(1) - s);
        }
        for (int64_t l = 0; l < LANES; l++) loss[blk * LANES + l] = sum[l] / (REAL)batch;
        if (!g) continue;

        /* Backward, last layer first; grad has the params' layout. */
        int64_t offset = n_params, act_offset = batch * total_width;
        for (int64_t k = depth - 1; k >= 0; k--) {
            const int64_t in = widths[k], n_out = widths[k + 1];
            offset -= in * n_out + n_out;
            act_offset -= batch * n_out;
            const vec *h_in = acts + act_offset - batch * in;
            linear_grads(h_in, delta, g + offset, g + offset + in * n_out, batch, in, n_out);
            if (k > 0) {
                linear_back(delta, p + offset, h_in, delta_prev, batch, in, n_out);
                vec *swap = delta;
                delta = delta_prev;
                delta_prev = swap;
            }
        }
        delta = acts + batch * total_width;
        delta_prev = delta + batch * max_width;
    }
}

int64_t stacked_mlp_lanes(void) { return LANES; }
