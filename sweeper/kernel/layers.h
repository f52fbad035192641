/*
 * The three products of a dense layer over a batch, for LANES members at once: forward,
 * weight gradients, and the delta into the previous layer. Part of stacked_mlp.c.
 */
#ifndef SWEEPER_LAYERS_H
#define SWEEPER_LAYERS_H

#include "lanes.h"

/* out[b][o] = act(bias[o] + sum_i h[b][i] * w[i][o]) for a batch of `batch` rows; act is ReLU
 * when `relu_out`, else none. Each output is summed in the order i = 0, 1, ... either way. */
static void linear(const vec *h, const vec *w, const vec *bias, vec *out, int64_t batch,
                   int64_t in, int64_t n_out, int relu_out) {
    if (n_out == 1) {
        /* One output: TILE rows at once, so that TILE sums advance side by side. */
        int64_t b = 0;
        for (; b + TILE <= batch; b += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = bias[0];
            for (int64_t i = 0; i < in; i++) {
                const vec wv = w[i];
                for (int t = 0; t < TILE; t++) acc[t] += h[(b + t) * in + i] * wv;
            }
            for (int t = 0; t < TILE; t++) out[b + t] = relu_out ? relu(acc[t]) : acc[t];
        }
        for (; b < batch; b++) {
            vec acc = bias[0];
            for (int64_t i = 0; i < in; i++) acc += h[b * in + i] * w[i];
            out[b] = relu_out ? relu(acc) : acc;
        }
        return;
    }
    int64_t b = 0;
    for (; b + RB <= batch; b += RB) {
        int64_t o = 0;
        for (; o + TILE <= n_out; o += TILE) {
            vec acc[RB][TILE];
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++) acc[r][t] = bias[o + t];
            for (int64_t i = 0; i < in; i++) {
                vec hv[RB];
                for (int r = 0; r < RB; r++) hv[r] = h[(b + r) * in + i];
                const vec *wi = w + i * n_out + o;
                for (int t = 0; t < TILE; t++) {
                    vec wv = wi[t];
                    IN_REGISTER(wv);
                    for (int r = 0; r < RB; r++) acc[r][t] += hv[r] * wv;
                }
            }
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++)
                    out[(b + r) * n_out + o + t] = relu_out ? relu(acc[r][t]) : acc[r][t];
        }
        for (; o < n_out; o++)
            for (int r = 0; r < RB; r++) {
                vec acc = bias[o];
                for (int64_t i = 0; i < in; i++) acc += h[(b + r) * in + i] * w[i * n_out + o];
                out[(b + r) * n_out + o] = relu_out ? relu(acc) : acc;
            }
    }
    for (; b < batch; b++) {
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
            for (int t = 0; t < TILE; t++) ob[o + t] = relu_out ? relu(acc[t]) : acc[t];
        }
        for (; o < n_out; o++) {
            vec acc = bias[o];
            for (int64_t i = 0; i < in; i++) acc += hb[i] * w[i * n_out + o];
            ob[o] = relu_out ? relu(acc) : acc;
        }
    }
}

/* gw[i][o] (+)= sum_b h[b][i] * delta[b][o] over `batch` rows: set when `first`, else added to
 * in the same order, so that a sum split over chunks of rows is the sum over all of them. */
static void weight_grads(const vec *h, const vec *delta, vec *gw, int64_t batch, int64_t in,
                         int64_t n_out, int first) {
    int64_t i = 0;
    for (; i + RB <= in; i += RB) {
        int64_t o = 0;
        for (; o + TILE <= n_out; o += TILE) {
            vec acc[RB][TILE];
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++) acc[r][t] = first ? zero() : gw[(i + r) * n_out + o + t];
            for (int64_t b = 0; b < batch; b++) {
                vec hv[RB];
                for (int r = 0; r < RB; r++) hv[r] = h[b * in + i + r];
                const vec *db = delta + b * n_out + o;
                for (int t = 0; t < TILE; t++) {
                    vec dv = db[t];
                    IN_REGISTER(dv);
                    for (int r = 0; r < RB; r++) acc[r][t] += hv[r] * dv;
                }
            }
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++) gw[(i + r) * n_out + o + t] = acc[r][t];
        }
        for (; o < n_out; o++)
            for (int r = 0; r < RB; r++) {
                vec acc = first ? zero() : gw[(i + r) * n_out + o];
                for (int64_t b = 0; b < batch; b++)
                    acc += h[b * in + i + r] * delta[b * n_out + o];
                gw[(i + r) * n_out + o] = acc;
            }
    }
    for (; i < in; i++) {
        int64_t o = 0;
        for (; o + TILE <= n_out; o += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = first ? zero() : gw[i * n_out + o + t];
            for (int64_t b = 0; b < batch; b++) {
                const vec hv = h[b * in + i];
                const vec *db = delta + b * n_out + o;
                for (int t = 0; t < TILE; t++) acc[t] += hv * db[t];
            }
            for (int t = 0; t < TILE; t++) gw[i * n_out + o + t] = acc[t];
        }
        for (; o < n_out; o++) {
            vec acc = first ? zero() : gw[i * n_out + o];
            for (int64_t b = 0; b < batch; b++) acc += h[b * in + i] * delta[b * n_out + o];
            gw[i * n_out + o] = acc;
        }
    }
}

/* gw[i][o] = sum_b h[b][i] * delta[b][o]; gb[o] = sum_b delta[b][o] (sums in the order b = 0,
 * 1, ...). */
static void linear_grads(const vec *h, const vec *delta, vec *gw, vec *gb, int64_t batch,
                         int64_t in, int64_t n_out) {
    if (n_out == 1) {
        /* One output: TILE inputs at once. */
        int64_t i = 0;
        for (; i + TILE <= in; i += TILE) {
            vec acc[TILE];
            for (int t = 0; t < TILE; t++) acc[t] = zero();
            for (int64_t b = 0; b < batch; b++) {
                const vec dv = delta[b];
                for (int t = 0; t < TILE; t++) acc[t] += h[b * in + i + t] * dv;
            }
            for (int t = 0; t < TILE; t++) gw[i + t] = acc[t];
        }
        for (; i < in; i++) {
            vec acc = zero();
            for (int64_t b = 0; b < batch; b++) acc += h[b * in + i] * delta[b];
            gw[i] = acc;
        }
    } else {
        /* In chunks of GRAD_ROWS rows: the chunk's activations and deltas stay in the L1 cache
         * while every tile of gw passes over them (all 32 rows of both do not fit). */
        for (int64_t b0 = 0; b0 < batch; b0 += GRAD_ROWS) {
            const int64_t rows = batch - b0 < GRAD_ROWS ? batch - b0 : GRAD_ROWS;
            weight_grads(h + b0 * in, delta + b0 * n_out, gw, rows, in, n_out, b0 == 0);
        }
    }
    for (int64_t o = 0; o < n_out; o++) gb[o] = zero();
    for (int64_t b = 0; b < batch; b++)
        for (int64_t o = 0; o < n_out; o++) gb[o] += delta[b * n_out + o];
}

/* back[b][i] = relu_backward(sum_o delta[b][o] * w[i][o], h[b][i]): the previous layer's delta
 * when `relu_in` (the previous layer is a ReLU), else the plain sum (its activation's backward
 * follows, `activate_backward`). */
static void linear_back(const vec *delta, const vec *w, const vec *h, vec *back, int64_t batch,
                        int64_t in, int64_t n_out, int relu_in) {
#define BACK(acc, hv) (relu_in ? relu_backward((acc), (hv)) : (acc))
    int64_t b = 0;
    for (; b + RB <= batch; b += RB) {
        int64_t i = 0;
        for (; i + TILE <= in; i += TILE) {
            vec acc[RB][TILE];
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++) acc[r][t] = zero();
            for (int64_t o = 0; o < n_out; o++) {
                vec dv[RB];
                for (int r = 0; r < RB; r++) dv[r] = delta[(b + r) * n_out + o];
                for (int t = 0; t < TILE; t++) {
                    vec wv = w[(i + t) * n_out + o];
                    IN_REGISTER(wv);
                    for (int r = 0; r < RB; r++) acc[r][t] += dv[r] * wv;
                }
            }
            for (int r = 0; r < RB; r++)
                for (int t = 0; t < TILE; t++)
                    back[(b + r) * in + i + t] = BACK(acc[r][t], h[(b + r) * in + i + t]);
        }
        for (; i < in; i++)
            for (int r = 0; r < RB; r++) {
                vec acc = zero();
                for (int64_t o = 0; o < n_out; o++) acc += delta[(b + r) * n_out + o] * w[i * n_out + o];
                back[(b + r) * in + i] = BACK(acc, h[(b + r) * in + i]);
            }
    }
    for (; b < batch; b++) {
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
                back[b * in + i + t] = BACK(acc[t], h[b * in + i + t]);
        }
        for (; i < in; i++) {
            vec acc = zero();
            for (int64_t o = 0; o < n_out; o++) acc += db[o] * w[i * n_out + o];
            back[b * in + i] = BACK(acc, h[b * in + i]);
        }
    }
#undef BACK
}

#endif
