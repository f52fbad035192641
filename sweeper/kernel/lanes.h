/*
 * One vector of LANES members, the width chosen at build time, and what is done lane by lane.
 *
 * Part of stacked_mlp.c (included by it, through layers.h): the vector type of -DVEC_BYTES
 * bytes of -DREAL numbers, the register tiles of the layer products, and the per-lane
 * primitives (ReLU, square root, exp, blends) that behave alike on every width.
 */
#ifndef SWEEPER_LANES_H
#define SWEEPER_LANES_H

#include <math.h>
#include <stdint.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

#ifndef REAL
#define REAL float
#endif
#ifndef VEC_BYTES
#define VEC_BYTES 32
#endif
#define LANES ((int64_t)(VEC_BYTES / sizeof(REAL)))
/* Register tiles: RB rows (or inputs) by TILE outputs of accumulators, 18 of AVX-512's 32
 * vector registers and 9 of the 16 below; the rest hold operands, each loaded once for RB
 * (or TILE) multiply-adds. A multiply-add takes 4 cycles and two issue per cycle, so 8 or
 * more independent accumulators keep both units busy. Measured on the obesity MLP: 3 x 6 and
 * 3 x 3 beat 2 x 9, 4 x 6, 2 x 4 and 1 x 6 or 1 x 9 (bench/kernel.py). The order of every sum
 * is the same whatever the tile, so the vector width changes no result. */
#ifndef TILE
#if VEC_BYTES >= 64
#define TILE 6
#else
#define TILE 3
#endif
#endif
#ifndef RB
#define RB 3
#endif

#ifndef GRAD_ROWS
#define GRAD_ROWS 8
#endif

#define IS_DOUBLE (sizeof(REAL) == 8)

/* aligned(sizeof(REAL)): loads and stores need not be vector-aligned. */
typedef REAL vec __attribute__((vector_size(VEC_BYTES), aligned(sizeof(REAL))));
/* The integer vector a comparison of two vecs gives (lanes of all ones or all zeros). */
#define IVEC_OF(r) __typeof__((r) < (r))
typedef IVEC_OF((vec){0}) ivec;

/*
 * Denormal numbers (below 1.2e-38 in float, 2.2e-308 in double) are flushed to zero inside the
 * kernel's calls (x86's FTZ and DAZ bits, restored on return). Adam's first moment and the
 * weight-decayed weights of a dead ReLU unit decay geometrically through that range, and every
 * operation on a denormal costs a microcode assist of about a hundred cycles: without the
 * flush the obesity grid's Adam groups ran 20 times slower at epoch 100 than at epoch 0 (and
 * so did PyTorch's path). Each lane is flushed alike on every vector width.
 */
#if defined(__SSE__)
#define FLUSH_DENORMALS() const unsigned int saved_csr = _mm_getcsr(); _mm_setcsr(saved_csr | 0x8040)
#define RESTORE_DENORMALS() _mm_setcsr(saved_csr)
#else
#define FLUSH_DENORMALS() (void)0
#define RESTORE_DENORMALS() (void)0
#endif

/* Keeps an operand in a register: without it GCC folds the load into each of the RB
 * multiply-adds that use it, loading it RB times (12% slower, measured). */
#if defined(__x86_64__) || defined(__i386__)
#define IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define IN_REGISTER(v) (void)0
#endif

static inline vec zero(void) { return (vec){0}; }

static inline vec splat(REAL v) { return zero() + v; }

/* where `mask` (a comparison's result), a, else b. */
static inline vec blend(ivec mask, vec a, vec b) {
    return (vec)(((ivec)a & mask) | ((ivec)b & ~mask));
}

/* max(z, 0) that keeps NaN, as torch.relu does. */
static inline vec relu(vec z) { return (vec)((ivec)z & ~(z < zero())); }

/* grad where h > 0, else 0: aten::threshold_backward(grad, h, 0). */
static inline vec relu_backward(vec grad, vec h) { return (vec)((ivec)grad & ~(h <= zero())); }

/* Correctly rounded square root of each lane (an IEEE operation: the same on every ISA). */
static inline vec vsqrt(vec v) {
#if VEC_BYTES == 64 && defined(__AVX512F__)
    if (IS_DOUBLE) { __m512d r = _mm512_sqrt_pd((__m512d)v); return (vec)r; }
    __m512 r = _mm512_sqrt_ps((__m512)v);
    return (vec)r;
#elif VEC_BYTES == 32 && defined(__AVX__)
    if (IS_DOUBLE) { __m256d r = _mm256_sqrt_pd((__m256d)v); return (vec)r; }
    __m256 r = _mm256_sqrt_ps((__m256)v);
    return (vec)r;
#elif VEC_BYTES == 16 && defined(__SSE2__)
    if (IS_DOUBLE) { __m128d r = _mm_sqrt_pd((__m128d)v); return (vec)r; }
    __m128 r = _mm_sqrt_ps((__m128)v);
    return (vec)r;
#else
    vec r;
    for (int64_t l = 0; l < LANES; l++) r[l] = sqrt(v[l]);
    return r;
#endif
}

/*
 * exp(x) per lane, to about one unit in the last place: x = k ln2 + r with |r| <= ln2 / 2
 * (Cody and Waite's two-part ln2), exp(r) by its Taylor series to r^7 / 7! in float and
 * r^13 / 13! in double (the next term is below half an ulp), times 2^k built in the exponent
 * bits. Above ln(max) it is +inf; below LO it is 0 (used only as 1 / (1 + exp(x)), where
 * 1 + exp(LO) already rounds to 1); NaN stays NaN.
 */
static inline vec vexp(vec x) {
    static const double inv_fact[14] = {1.0,
                                        1.0,
                                        1.0 / 2,
                                        1.0 / 6,
                                        1.0 / 24,
                                        1.0 / 120,
                                        1.0 / 720,
                                        1.0 / 5040,
                                        1.0 / 40320,
                                        1.0 / 362880,
                                        1.0 / 3628800,
                                        1.0 / 39916800,
                                        1.0 / 479001600,
                                        1.0 / 6227020800.0};
    const int degree = IS_DOUBLE ? 13 : 7;
    const REAL hi = IS_DOUBLE ? 709.782712893384 : 88.72283f;
    const REAL lo = IS_DOUBLE ? -700.0 : -86.0f;
    const REAL ln2_hi = IS_DOUBLE ? 6.93147180369123816490e-01 : 0.693359375f;
    const REAL ln2_lo = IS_DOUBLE ? 1.90821492927058770002e-10 : -2.12194440e-4f;
    /* Adding 1.5 * 2^mantissa rounds to an integer, which then sits in the low bits. */
    const REAL shifter = IS_DOUBLE ? 0x1.8p52 : 0x1.8p23f;
    const int mantissa = IS_DOUBLE ? 52 : 23, bias = IS_DOUBLE ? 1023 : 127;

    const vec xc = blend(x < splat(lo), splat(lo), blend(x > splat(hi), splat(hi), x));
    const vec t = xc * (REAL)1.4426950408889634 + shifter;
    const vec k = t - shifter;
    const vec r = (xc - k * ln2_hi) - k * ln2_lo;
    vec p = splat((REAL)inv_fact[degree]);
    for (int n = degree - 1; n >= 0; n--) p = p * r + (REAL)inv_fact[n];
    /* 2^(k - 1), times 2 after the product, so that k = 128 (1024) does not overflow early. */
    const ivec exponent = ((ivec)t - (ivec)splat(shifter) + (bias - 1)) << mantissa;
    vec out = p * (vec)exponent * (REAL)2;
    out = blend(x > splat(hi), splat((REAL)INFINITY), out);
    out = blend(x < splat(lo), zero(), out);
    return blend(x != x, x, out);
}

#endif
