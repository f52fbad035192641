/*
 * Many small MLPs trained at once, one SIMD lane per member.
 *
 * sweeper's batched executor trains a group of tiny models (the obesity MLP has 1,009
 * parameters) as one. In PyTorch that is a batched matrix product per layer, and MKL's batched
 * GEMM spends about a microsecond per member per product on 32 x 18 x 18 matrices, which bounds
 * the whole executor. Here members are interleaved instead: a block of LANES members (one
 * vector: 16 floats or 8 doubles with AVX-512, 8 or 4 with AVX2, 4 or 2 portable) stores each
 * parameter and each activation as one vector, so every multiply-add of the forward and
 * backward pass is one vector instruction for LANES members, accumulating in registers. No
 * number of one member ever meets another's (a member that diverges to NaN leaves the others
 * untouched), and every lane runs the same instructions whatever the vector width, so a member's
 * numbers depend neither on its lane nor on the width chosen. The math is PyTorch's: nn.Linear,
 * per hidden layer ReLU (NaN passes through, threshold_backward), tanh, sigmoid or exact GELU,
 * an identity or `scale * sigmoid` head, any number of outputs, mean squared error or
 * cross-entropy (activations.h); and, in `stacked_mlp_train_epoch`, SAM's two passes and the
 * SGD / Adam / AdamW updates of torch.optim. The obesity MLP is ReLU layers, one output through
 * scale * sigmoid and MSE; a model task's plain MLP may be any of these
 * (sweeper.tasks.model.lanes).
 *
 * Compiled by sweeper.kernel with -DREAL=float or -DREAL=double and
 * -DVEC_BYTES=64 (-mavx512f), 32 (-mavx2 -mfma) or 16 (no ISA flag). Layout, per block of LANES
 * members (vectors of LANES numbers):
 *   params, grad, optimizer state  [P] vectors: per layer, weight [in][out] then bias [out]
 *   x             [rows][features] numbers, shared by all members
 *   y             [rows][outputs] numbers (MSE), or [rows] class indices (cross-entropy)
 *   idx           row numbers, each member its own: member m's b-th row is idx[m * stride + b]
 *   work          stacked_mlp_work_size(...) numbers of scratch
 */
#include "activations.h"
#include "layers.h"

/* The scratch of one block: activations, two deltas and the gathered targets, and what the
 * members compute (the same for every block). */
typedef struct {
    int64_t depth, total_width, max_width;
    const int64_t *widths;
    const int64_t *act; /* [depth - 1] hidden activations (ACT_*) */
    int64_t head, loss, targets_width;
    REAL scale;
    vec *acts;    /* per layer k: [batch][widths[k]]; layer 0 holds the gathered inputs */
    vec *pre;     /* laid out like acts: a GELU layer's inputs */
    vec *delta;   /* [batch][max width] */
    vec *delta_prev;
    vec *targets; /* [batch][targets_width] */
} Net;

/* What every member computes: hidden activations, head, loss, and the head's scale. */
typedef struct {
    const int64_t *act;
    int64_t head, loss;
    REAL scale;
} Arch;

static Net net_of(int64_t depth, const int64_t *widths, Arch arch, int64_t batch, vec *work) {
    Net net = {depth, 0, 0, widths, arch.act, arch.head, arch.loss, 1, arch.scale,
               work, 0, 0, 0, 0};
    for (int64_t k = 0; k <= depth; k++) {
        net.total_width += widths[k];
        if (widths[k] > net.max_width) net.max_width = widths[k];
    }
    net.targets_width = arch.loss == LOSS_MSE ? widths[depth] : 1;
    net.delta = net.acts + batch * net.total_width;
    net.delta_prev = net.delta + batch * net.max_width;
    net.targets = net.delta_prev + batch * net.max_width;
    net.pre = net.targets + batch * widths[depth];
    return net;
}

/* Vectors of scratch one block needs for `batch` rows (see `net_of`). */
static int64_t net_size(int64_t depth, const int64_t *widths, int64_t batch) {
    int64_t total = 0, max = 0;
    for (int64_t k = 0; k <= depth; k++) {
        total += widths[k];
        if (widths[k] > max) max = widths[k];
    }
    return batch * (2 * total + 2 * max + widths[depth]);
}

/* Each member's rows into the block's inputs and targets: lane l of acts[0][b][f] is
 * x[row][f] with row = rows[l * stride + b] (rows NULL: row = first + b, for every lane). */
static void gather(const Net *net, const REAL *x, const REAL *y, const int64_t *rows,
                   int64_t stride, int64_t first, int64_t batch) {
    const int64_t features = net->widths[0], tw = net->targets_width;
    REAL *a = (REAL *)net->acts, *targets = (REAL *)net->targets;
    for (int64_t l = 0; l < LANES; l++) {
        const int64_t *lane_rows = rows ? rows + l * stride : 0;
        for (int64_t b = 0; b < batch; b++) {
            const int64_t row = lane_rows ? lane_rows[b] : first + b;
            const REAL *xr = x + row * features;
            REAL *ab = a + b * features * LANES + l;
            for (int64_t f = 0; f < features; f++) ab[f * LANES] = xr[f];
            if (y)
                for (int64_t o = 0; o < tw; o++) targets[(b * tw + o) * LANES + l] = y[row * tw + o];
        }
    }
}

/* As `gather`, from row numbers laid out [batch][LANES] (lane l's b-th row at rows[b * LANES
 * + l]), with the CPU's gather instructions where it has them: one per feature and row for all
 * lanes, instead of one load and store per number. */
static void gather_lanes(const Net *net, const REAL *x, const REAL *y, const int32_t *rows,
                         int64_t batch) {
    const int64_t features = net->widths[0], tw = net->targets_width;
    vec *acts = net->acts;
    /* Several targets a row: gathered one by one below (the vector gathers take one). */
    const int one_target = tw == 1;
#if VEC_BYTES == 64 && defined(__AVX512F__)
    for (int64_t b = 0; b < batch; b++) {
        if (IS_DOUBLE) {
            const __m256i r = _mm256_loadu_si256((const __m256i *)(rows + b * LANES));
            const __m256i at = _mm256_mullo_epi32(r, _mm256_set1_epi32((int)features));
            for (int64_t f = 0; f < features; f++) {
                __m512d v = _mm512_i32gather_pd(at, (const double *)x + f, 8);
                acts[b * features + f] = (vec)v;
            }
            if (one_target) {
                __m512d t = _mm512_i32gather_pd(r, (const double *)y, 8);
                net->targets[b] = (vec)t;
            }
        } else {
            const __m512i r = _mm512_loadu_si512((const void *)(rows + b * LANES));
            const __m512i at = _mm512_mullo_epi32(r, _mm512_set1_epi32((int)features));
            for (int64_t f = 0; f < features; f++) {
                __m512 v = _mm512_i32gather_ps(at, (const float *)x + f, 4);
                acts[b * features + f] = (vec)v;
            }
            if (one_target) {
                __m512 t = _mm512_i32gather_ps(r, (const float *)y, 4);
                net->targets[b] = (vec)t;
            }
        }
    }
#elif VEC_BYTES == 32 && defined(__AVX2__)
    for (int64_t b = 0; b < batch; b++) {
        if (IS_DOUBLE) {
            const __m128i r = _mm_loadu_si128((const __m128i *)(rows + b * LANES));
            const __m128i at = _mm_mullo_epi32(r, _mm_set1_epi32((int)features));
            for (int64_t f = 0; f < features; f++) {
                __m256d v = _mm256_i32gather_pd((const double *)x + f, at, 8);
                acts[b * features + f] = (vec)v;
            }
            if (one_target) {
                __m256d t = _mm256_i32gather_pd((const double *)y, r, 8);
                net->targets[b] = (vec)t;
            }
        } else {
            const __m256i r = _mm256_loadu_si256((const __m256i *)(rows + b * LANES));
            const __m256i at = _mm256_mullo_epi32(r, _mm256_set1_epi32((int)features));
            for (int64_t f = 0; f < features; f++) {
                __m256 v = _mm256_i32gather_ps((const float *)x + f, at, 4);
                acts[b * features + f] = (vec)v;
            }
            if (one_target) {
                __m256 t = _mm256_i32gather_ps((const float *)y, r, 4);
                net->targets[b] = (vec)t;
            }
        }
    }
#else
    REAL *a = (REAL *)acts, *targets = (REAL *)net->targets;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t l = 0; l < LANES; l++) {
            const int64_t row = rows[b * LANES + l];
            for (int64_t f = 0; f < features; f++) a[(b * features + f) * LANES + l] = x[row * features + f];
            if (one_target) targets[b * LANES + l] = y[row];
        }
#endif
    if (!one_target) {
        REAL *targets = (REAL *)net->targets;
        for (int64_t b = 0; b < batch; b++)
            for (int64_t l = 0; l < LANES; l++)
                for (int64_t o = 0; o < tw; o++)
                    targets[(b * tw + o) * LANES + l] = y[(int64_t)rows[b * LANES + l] * tw + o];
    }
}

/* The forward pass of the gathered batch through parameters p, keeping every layer's output
 * (after its activation; the last after the head, before its scale): the outputs
 * [batch][outs]. */
static const vec *forward(const Net *net, const vec *p, int64_t batch) {
    const int64_t depth = net->depth, *widths = net->widths;
    const vec *h = net->acts, *w = p;
    vec *out = net->acts + batch * widths[0], *pre = net->pre + batch * widths[0];
    for (int64_t k = 0; k < depth; k++) {
        const int64_t in = widths[k], n_out = widths[k + 1];
        const int hidden = k < depth - 1, relu = hidden && net->act[k] == ACT_RELU;
        linear(h, w, w + in * n_out, out, batch, in, n_out, relu);
        if (hidden && !relu) activate(net->act[k], out, pre, batch * n_out);
        if (!hidden && net->head == HEAD_SCALED_SIGMOID)
            for (int64_t j = 0; j < batch * n_out; j++) out[j] = vsigmoid(out[j]);
        w += in * n_out + n_out;
        h = out;
        out += batch * n_out;
        pre += batch * n_out;
    }
    return h;
}

/*
 * The loss (`head_loss`) per lane on the gathered batch, and when g is not NULL its gradient
 * with respect to the parameters p (g has p's layout).
 */
static vec loss_grad(const Net *net, int64_t n_params, const vec *p, vec *g, int64_t batch) {
    const int64_t depth = net->depth, *widths = net->widths;
    vec *acts = net->acts, *delta = net->delta, *delta_prev = net->delta_prev;
    const vec *h = forward(net, p, batch);
    const vec sum = head_loss(net->head, net->loss, net->scale, h, net->targets, delta, batch,
                              widths[depth]);
    if (g) {
        /* Backward, last layer first. */
        int64_t offset = n_params, act_offset = batch * net->total_width;
        for (int64_t k = depth - 1; k >= 0; k--) {
            const int64_t in = widths[k], n_out = widths[k + 1];
            offset -= in * n_out + n_out;
            act_offset -= batch * n_out;
            const vec *h_in = acts + act_offset - batch * in;
            linear_grads(h_in, delta, g + offset, g + offset + in * n_out, batch, in, n_out);
            if (k > 0) {
                const int64_t act = net->act[k - 1];
                linear_back(delta, p + offset, h_in, delta_prev, batch, in, n_out, act == ACT_RELU);
                if (act != ACT_RELU)
                    activate_backward(act, delta_prev, h_in, net->pre + act_offset - batch * in,
                                      batch * in);
                vec *swap = delta;
                delta = delta_prev;
                delta_prev = swap;
            }
        }
    }
    return sum;
}

/*
 * Per-member loss of the MLP over each member's rows, and, when grad is not NULL, its gradient
 * with respect to params.
 *
 * widths: depth + 1 layer widths (widths[0] = features, widths[depth] = outputs).
 * act: depth - 1 hidden activations (ACT_*); head: HEAD_*, scale its factor; loss_kind:
 * LOSS_*. y: [rows][outputs] targets for MSE, [rows] class indices for cross-entropy.
 * idx, idx_stride: member m uses rows idx[m * idx_stride + b]; idx NULL means every member
 * uses rows 0 .. batch - 1 (evaluation on a shared set).
 * loss: [blocks * LANES] numbers.
 */
void stacked_mlp_loss_grad(int64_t blocks, int64_t depth, const int64_t *widths,
                           const int64_t *act, int64_t head, int64_t loss_kind,
                           int64_t n_params, const REAL *params, REAL *grad, const REAL *x,
                           const REAL *y, const int64_t *idx, int64_t idx_stride,
                           int64_t batch, REAL scale, REAL *loss, REAL *work) {
    FLUSH_DENORMALS();
    const Arch arch = {act, head, loss_kind, scale};
    const Net net = net_of(depth, widths, arch, batch, (vec *)work);
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t *rows = idx ? idx + blk * LANES * idx_stride : 0;
        gather(&net, x, y, rows, idx_stride, 0, batch);
        const vec *p = (const vec *)params + blk * n_params;
        vec *g = grad ? (vec *)grad + blk * n_params : 0;
        const vec l = loss_grad(&net, n_params, p, g, batch);
        for (int64_t lane = 0; lane < LANES; lane++) loss[blk * LANES + lane] = l[lane];
    }
    RESTORE_DENORMALS();
}

/*
 * Every member's outputs (after the head, scale included) for the same n rows of x, in chunks
 * of `chunk` rows (the work buffer is sized for it): out [blocks * LANES][n][outputs].
 */
void stacked_mlp_predict(int64_t blocks, int64_t depth, const int64_t *widths,
                         const int64_t *act, int64_t head, REAL scale, int64_t n_params,
                         const REAL *params, const REAL *x, int64_t n, int64_t chunk, REAL *out,
                         REAL *work) {
    FLUSH_DENORMALS();
    const Arch arch = {act, head, LOSS_MSE, scale};
    const Net net = net_of(depth, widths, arch, chunk, (vec *)work);
    const int64_t outs = widths[depth];
    const REAL factor = head == HEAD_SCALED_SIGMOID ? scale : 1;
    for (int64_t blk = 0; blk < blocks; blk++) {
        const vec *p = (const vec *)params + blk * n_params;
        for (int64_t first = 0; first < n; first += chunk) {
            const int64_t rows = n - first < chunk ? n - first : chunk;
            gather(&net, x, 0, 0, 0, first, rows);
            const vec *h = forward(&net, p, rows);
            for (int64_t l = 0; l < LANES; l++) {
                REAL *o = out + ((blk * LANES + l) * n + first) * outs;
                for (int64_t j = 0; j < rows * outs; j++) o[j] = h[j][l] * factor;
            }
        }
    }
    RESTORE_DENORMALS();
}

/* The updates `stacked_mlp_train_epoch` applies (torch.optim's, step for step). */
enum { UPDATE_SGD = 0, UPDATE_ADAM = 1, UPDATE_ADAMW = 2 };
/* Per-member values in `hyper`, each [LANES] numbers per block, in this order. */
enum { H_LR, H_WEIGHT_DECAY, H_MOMENTUM, H_RHO, N_HYPER };

/* torch.optim.SGD (dampening 0, no Nesterov): g += wd * p; with momentum buf = g on the first
 * step, else buf = momentum * buf + g, and g = buf; p -= lr * g. */
static void sgd(vec *p, const vec *g, vec *buf, int64_t n, const vec *hyper, int first) {
    const vec lr = hyper[H_LR], wd = hyper[H_WEIGHT_DECAY], mom = hyper[H_MOMENTUM];
    for (int64_t j = 0; j < n; j++) {
        vec d = g[j] + p[j] * wd;
        if (buf) {
            buf[j] = first ? d : buf[j] * mom + d;
            d = buf[j];
        }
        p[j] = p[j] - lr * d;
    }
}

/* torch.optim.Adam, betas (0.9, 0.999), eps 1e-8, coupled weight decay; `step` counts from 1.
 * The coefficients are computed in double and rounded to REAL, as PyTorch's fused kernel does;
 * sqrt(v) is multiplied by 1 / sqrt(1 - beta2^step) where PyTorch divides (one rounding apart:
 * a division costs as much as the square root, and the update is bound by the two). */
static void adam(vec *p, const vec *g, vec *m, vec *v, int64_t n, const vec *hyper,
                 int64_t step) {
    const double bc1 = 1 - pow(0.9, (double)step), bc2 = 1 - pow(0.999, (double)step);
    const vec wd = hyper[H_WEIGHT_DECAY];
    vec step_size;
    for (int64_t l = 0; l < LANES; l++) step_size[l] = (REAL)((double)hyper[H_LR][l] / bc1);
    const vec inv_bc2_sqrt = splat((REAL)(1 / sqrt(bc2)));
    const REAL beta1 = (REAL)0.9, beta2 = (REAL)0.999, eps = (REAL)1e-8;
    const REAL c1 = (REAL)(1 - 0.9), c2 = (REAL)(1 - 0.999);
    for (int64_t j = 0; j < n; j++) {
        const vec d = g[j] + p[j] * wd;
        m[j] = m[j] * beta1 + d * c1;
        v[j] = v[j] * beta2 + d * d * c2;
        const vec denom = vsqrt(v[j]) * inv_bc2_sqrt + eps;
        p[j] = p[j] - step_size * m[j] / denom;
    }
}

/* torch.optim.AdamW: p *= 1 - lr * weight_decay (the product in double, as PyTorch takes the
 * two as Python floats), then Adam's step without weight decay. */
static void adamw(vec *p, const vec *g, vec *m, vec *v, int64_t n, const vec *hyper,
                  int64_t step) {
    vec decay, plain[N_HYPER];
    for (int64_t l = 0; l < LANES; l++)
        decay[l] = (REAL)(1 - (double)hyper[H_LR][l] * (double)hyper[H_WEIGHT_DECAY][l]);
    for (int64_t j = 0; j < n; j++) p[j] = p[j] * decay;
    for (int q = 0; q < N_HYPER; q++) plain[q] = hyper[q];
    plain[H_WEIGHT_DECAY] = zero();
    adam(p, g, m, v, n, plain, step);
}

/*
 * One epoch of training, every step fused: per block, for each mini-batch of `batch` rows of
 * each member's order (the last one shorter): the loss and gradient at w; with `sam` SAM's
 * second pass (e = rho * g / (||g|| + 1e-12), one norm per member, the gradient again at w + e,
 * taken at w's place as davda54/sam does); then the update `update` at w with that gradient.
 * depth, widths, act, head, loss_kind, scale, x, y: as for `stacked_mlp_loss_grad`.
 *
 * params, state_a, state_b: [blocks][P] vectors, changed in place; state_a is SGD's momentum
 * buffer (NULL without momentum) or Adam's (AdamW's) first moment, state_b its second moment.
 * idx: [blocks][n_rows][LANES] row numbers (int32), each member's order for the epoch
 * (member blk * LANES + l's b-th row at idx[(blk * n_rows + b) * LANES + l]).
 * hyper: [blocks][N_HYPER][LANES] numbers (lr, weight decay, momentum, SAM rho).
 * step: optimizer steps taken before this epoch (Adam's count; SGD: 0 starts the buffer).
 * loss_sum: [blocks * LANES] numbers, out: sum over mini-batches of loss * rows, in batch
 * order, in REAL (as the PyTorch path accumulates it).
 */
void stacked_mlp_train_epoch(int64_t blocks, int64_t depth, const int64_t *widths,
                             const int64_t *act, int64_t head, int64_t loss_kind,
                             int64_t n_params, REAL *params, REAL *state_a, REAL *state_b,
                             const REAL *x, const REAL *y, const int32_t *idx, int64_t n_rows,
                             int64_t batch, REAL scale, int64_t update, const REAL *hyper,
                             int64_t sam, int64_t step, REAL *loss_sum, REAL *work) {
    FLUSH_DENORMALS();
    const Arch arch = {act, head, loss_kind, scale};
    const Net net = net_of(depth, widths, arch, batch, (vec *)work);
    vec *g = (vec *)work + net_size(depth, widths, batch);
    vec *moved = g + n_params; /* w + e for SAM's second pass */
    for (int64_t blk = 0; blk < blocks; blk++) {
        vec *p = (vec *)params + blk * n_params;
        vec *a = state_a ? (vec *)state_a + blk * n_params : 0;
        vec *b = state_b ? (vec *)state_b + blk * n_params : 0;
        const vec *h = (const vec *)hyper + blk * N_HYPER;
        const int32_t *rows = idx + blk * n_rows * LANES;
        vec total = zero();
        int64_t t = step;
        for (int64_t start = 0; start < n_rows; start += batch) {
            const int64_t rows_now = n_rows - start < batch ? n_rows - start : batch;
            gather_lanes(&net, x, y, rows + start * LANES, rows_now);
            total += loss_grad(&net, n_params, p, g, rows_now) * (REAL)rows_now;
            if (sam) {
                vec sq[4] = {zero(), zero(), zero(), zero()};
                int64_t j = 0;
                for (; j + 4 <= n_params; j += 4)
                    for (int q = 0; q < 4; q++) sq[q] += g[j + q] * g[j + q];
                for (; j < n_params; j++) sq[0] += g[j] * g[j];
                const vec norm = vsqrt((sq[0] + sq[1]) + (sq[2] + sq[3]));
                const vec coef = h[H_RHO] / (norm + (REAL)1e-12);
                for (j = 0; j < n_params; j++) moved[j] = p[j] + g[j] * coef;
                loss_grad(&net, n_params, moved, g, rows_now);
            }
            t++;
            if (update == UPDATE_ADAM)
                adam(p, g, a, b, n_params, h, t);
            else if (update == UPDATE_ADAMW)
                adamw(p, g, a, b, n_params, h, t);
            else
                sgd(p, g, a, n_params, h, t == 1);
        }
        for (int64_t l = 0; l < LANES; l++) loss_sum[blk * LANES + l] = total[l];
    }
    RESTORE_DENORMALS();
}

/* REALs of `work` the functions above need for mini-batches of up to `batch` rows. */
int64_t stacked_mlp_work_size(int64_t depth, const int64_t *widths, int64_t n_params,
                              int64_t batch) {
    return LANES * (net_size(depth, widths, batch) + 2 * n_params);
}

int64_t stacked_mlp_lanes(void) { return LANES; }
