/* The seed network's two blocks (and the fast network's first) on the CPU: a 5x5 convolution
   (stride 1, no padding) and the 2x2 max-pool after it, in one pass that never writes the
   convolution's output out; and the gradients through both, summed only where the max-pool let a
   gradient through. First block: one-channel 28x28 images to 12x12; second: 12x12 to 4x4.
   Built and loaded by convpool.py; plain C with GCC/Clang vector types (AVX2 where the CPU has
   it), threads from OpenMP (torch's own runtime, which is already loaded under the same name
   when this library is). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else /* a compiler without OpenMP: one thread */
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

#define IN 28
#define K 5
#define OUT (IN - K + 1) /* 24 */
#define P (OUT / 2)      /* 12 */

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline v8 splat(float f) { v8 v = {f, f, f, f, f, f, f, f}; return v; }

typedef int i8 __attribute__((vector_size(32)));
/* the even and the odd lanes of a then b */
#if defined(__clang__) || __GNUC__ >= 12
static inline v8 pair_evens(v8 a, v8 b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); }
static inline v8 pair_odds(v8 a, v8 b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); }
#else
static const i8 EVENS = {0, 2, 4, 6, 8, 10, 12, 14}, ODDS = {1, 3, 5, 7, 9, 11, 13, 15};
static inline v8 pair_evens(v8 a, v8 b) { return __builtin_shuffle(a, b, EVENS); }
static inline v8 pair_odds(v8 a, v8 b) { return __builtin_shuffle(a, b, ODDS); }
#endif
static inline v8 pick(i8 m, v8 yes, v8 no) { return (v8)(((i8)yes & m) | ((i8)no & ~m)); }

/* The 2x2 windows whose top-left, top-right, bottom-left and bottom-right values are lanes of
   tl, tr, bl, br: the first maximum in row-major order (a NaN wins, as in torch), stored with its
   position (0..3) at a stride of c, for the first `lanes` lanes. */
static inline void pool_store(v8 tl, v8 tr, v8 bl, v8 br, float *out, uint8_t *idx, int c, int lanes) {
    i8 right_t = (tr > tl) | (tr != tr), right_b = (br > bl) | (br != br);
    v8 top = pick(right_t, tr, tl), bottom = pick(right_b, br, bl);
    i8 down = (bottom > top) | (bottom != bottom);
    v8 best = pick(down, bottom, top);
    i8 where = (down & (2 | (right_b & 1))) | (~down & (right_t & 1));
    for (int l = 0; l < lanes; l++) {
        out[l * c] = best[l];
        if (idx) idx[l * c] = (uint8_t)where[l];
    }
}

/* x: n one-channel 28x28 images; w: c x 5 x 5; b: c or NULL. out: n x 12 x 12 x c (channels
   last), the max-pooled convolution; idx (or NULL): where in each 2x2 window the maximum was
   (0..3, row-major), for the backward pass; the first maximum in that order wins, and a NaN
   wins, as in torch. */
void convpool_forward(const float *x, const float *w, const float *b, float *out, uint8_t *idx,
                      int n, int c, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int img = 0; img < n; img++) {
        const float *xi = x + (int64_t)img * IN * IN;
        float *oi = out + (int64_t)img * P * P * c;
        uint8_t *ii = idx ? idx + (int64_t)img * P * P * c : NULL;
        for (int ch = 0; ch < c; ch++) {
            const float *wc = w + ch * K * K;
            v8 bias = splat(b ? b[ch] : 0.0f);
            for (int pr = 0; pr < P; pr++) {
                v8 a0 = bias, a1 = bias, a2 = bias, b0 = bias, b1 = bias, b2 = bias;
                for (int kr = 0; kr < K; kr++) {
                    const float *r0 = xi + (2 * pr + kr) * IN, *r1 = r0 + IN;
                    for (int ks = 0; ks < K; ks++) {
                        v8 wv = splat(wc[kr * K + ks]);
                        a0 += wv * load8(r0 + ks); a1 += wv * load8(r0 + ks + 8); a2 += wv * load8(r0 + ks + 16);
                        b0 += wv * load8(r1 + ks); b1 += wv * load8(r1 + ks + 8); b2 += wv * load8(r1 + ks + 16);
                    }
                }
                float *ob = oi + (int64_t)pr * P * c + ch;
                uint8_t *ib = ii ? ii + (int64_t)pr * P * c + ch : NULL;
                pool_store(pair_evens(a0, a1), pair_odds(a0, a1), pair_evens(b0, b1), pair_odds(b0, b1), ob, ib, c, 8);
                pool_store(pair_evens(a2, a2), pair_odds(a2, a2), pair_evens(b2, b2), pair_odds(b2, b2), ob + 8 * c,
                           ib ? ib + 8 * c : NULL, c, 4);
            }
        }
    }
}

/* The gradient of the weights (dw: c x 5 x 5) and of the bias (db: c, or NULL) from grad, the
   gradient of the pooled output (n x 12 x 12 x c, channels last), with the idx of the forward
   pass. Each thread sums a fixed share of the images into its own part of a scratch buffer; the
   parts are then added in thread order, so the result depends on the thread count but never on
   timing. Returns 0, or -1 if memory ran out. */
int convpool_backward(const float *x, const uint8_t *idx, const float *grad, float *dw, float *db,
                      int n, int c, int threads) {
    int stride = (c * K * 8 + c + 15) / 16 * 16; /* whole cache lines per thread */
    float *scratch = calloc((size_t)threads * stride, sizeof(float));
    if (!scratch) return -1;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *mine = scratch + (int64_t)t * stride;
        int lo = (int)((int64_t)n * t / nt), hi = (int)((int64_t)n * (t + 1) / nt);
        for (int img = lo; img < hi; img++) {
            float xi[IN * IN + 8]; /* a copy with room for the 8-wide reads past its last row */
            memcpy(xi, x + (int64_t)img * IN * IN, sizeof(float) * IN * IN);
            memset(xi + IN * IN, 0, sizeof(float) * 8);
            const float *gi = grad + (int64_t)img * P * P * c;
            const uint8_t *ii = idx + (int64_t)img * P * P * c;
            for (int ch = 0; ch < c; ch++) {
                v8 r0 = splat(0.0f), r1 = r0, r2 = r0, r3 = r0, r4 = r0; /* rows of the 5x5 (lanes 0-4) */
                float sum = 0.0f;
                for (int pos = 0; pos < P * P; pos++) {
                    float g = gi[pos * c + ch];
                    sum += g;
                    if (g == 0.0f) continue; /* most are: the max-pool's other three, and the ReLU's zeros */
                    int q = ii[pos * c + ch];
                    const float *at = xi + (2 * (pos / P) + (q >> 1)) * IN + 2 * (pos % P) + (q & 1);
                    v8 gv = splat(g);
                    r0 += gv * load8(at); r1 += gv * load8(at + IN); r2 += gv * load8(at + 2 * IN);
                    r3 += gv * load8(at + 3 * IN); r4 += gv * load8(at + 4 * IN);
                }
                v8 *acc = (v8 *)(mine + ch * K * 8);
                v8 rows[K] = {r0, r1, r2, r3, r4};
                for (int kr = 0; kr < K; kr++) {
                    v8 a; memcpy(&a, acc + kr, sizeof a);
                    a += rows[kr];
                    memcpy(acc + kr, &a, sizeof a);
                }
                mine[c * K * 8 + ch] += sum;
            }
        }
    }
    for (int ch = 0; ch < c; ch++) {
        for (int k = 0; k < K * K; k++) dw[ch * K * K + k] = 0.0f;
        if (db) db[ch] = 0.0f;
    }
    for (int t = 0; t < threads; t++) {
        const float *mine = scratch + (int64_t)t * stride;
        for (int ch = 0; ch < c; ch++) {
            for (int kr = 0; kr < K; kr++)
                for (int ks = 0; ks < K; ks++) dw[(ch * K + kr) * K + ks] += mine[(ch * K + kr) * 8 + ks];
            if (db) db[ch] += mine[c * K * 8 + ch];
        }
    }
    free(scratch);
    return 0;
}

/* The seed network's second block: a 5x5 convolution of ci-channel 12x12 maps (channels last,
   ci <= MAXC) into co channels of 8x8, and the 2x2 max-pool to 4x4. */
#define S2 12
#define O2 (S2 - K + 1) /* 8 */
#define P2 (O2 / 2)     /* 4 */
#define MAXC 32

/* x: n x 12 x 12 x ci; w: co x ci x 5 x 5; b: co or NULL. out, idx: n x 4 x 4 x co (channels
   last), as convpool_forward's. */
void convpool2_forward(const float *x, const float *w, const float *b, float *out, uint8_t *idx,
                       int n, int ci, int co, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int img = 0; img < n; img++) {
        float planes[MAXC][S2 * S2]; /* this image's channels, each a contiguous 12x12 plane */
        const float *xi = x + (int64_t)img * S2 * S2 * ci;
        for (int p = 0; p < S2 * S2; p++)
            for (int c = 0; c < ci; c++) planes[c][p] = xi[p * ci + c];
        float *oi = out + (int64_t)img * P2 * P2 * co;
        uint8_t *ii = idx ? idx + (int64_t)img * P2 * P2 * co : NULL;
        for (int oc = 0; oc < co; oc++) {
            v8 row[O2]; /* the 8x8 output, a row per vector */
            for (int r = 0; r < O2; r++) row[r] = splat(b ? b[oc] : 0.0f);
            for (int c = 0; c < ci; c++) {
                const float *wc = w + ((int64_t)oc * ci + c) * K * K, *plane = planes[c];
                for (int kr = 0; kr < K; kr++)
                    for (int ks = 0; ks < K; ks++) {
                        v8 wv = splat(wc[kr * K + ks]);
                        for (int r = 0; r < O2; r++) row[r] += wv * load8(plane + (r + kr) * S2 + ks);
                    }
            }
            for (int pr = 0; pr < P2; pr++)
                pool_store(pair_evens(row[2 * pr], row[2 * pr]), pair_odds(row[2 * pr], row[2 * pr]),
                           pair_evens(row[2 * pr + 1], row[2 * pr + 1]), pair_odds(row[2 * pr + 1], row[2 * pr + 1]),
                           oi + pr * P2 * co + oc, ii ? ii + pr * P2 * co + oc : NULL, co, P2);
        }
    }
}

/* From grad (n x 4 x 4 x co, channels last) and the forward's idx: dx (n x 12 x 12 x ci, channels
   last; NULL when not wanted), dw (co x ci x 5 x 5) and db (co, or NULL). Only the windows'
   maxima with a non-zero gradient contribute. dw and db are summed per thread and added in thread
   order, as in convpool_backward. Returns 0, or -1 if memory ran out. */
int convpool2_backward(const float *x, const uint8_t *idx, const float *grad, const float *w, float *dx,
                       float *dw, float *db, int n, int ci, int co, int threads) {
    int cp = (ci + 7) / 8 * 8; /* channels padded to whole vectors */
    int64_t per_thread = ((int64_t)co * K * K * cp + co + 15) / 16 * 16;
    float *wt = calloc((size_t)co * K * K * cp, sizeof(float)); /* w as [oc][kr][ks][channel] */
    float *sums = calloc((size_t)threads * per_thread, sizeof(float));
    if (!wt || !sums) {
        free(wt);
        free(sums);
        return -1;
    }
    for (int oc = 0; oc < co; oc++)
        for (int c = 0; c < ci; c++)
            for (int k = 0; k < K * K; k++)
                wt[((int64_t)oc * K * K + k) * cp + c] = w[((int64_t)oc * ci + c) * K * K + k];
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *mine = sums + t * per_thread; /* [oc][kr][ks][channel], then co bias sums */
        int lo = (int)((int64_t)n * t / nt), hi = (int)((int64_t)n * (t + 1) / nt);
        float xl[S2 * S2 * MAXC], dxl[S2 * S2 * MAXC]; /* this image, channels padded to cp */
        for (int img = lo; img < hi; img++) {
            const float *xi = x + (int64_t)img * S2 * S2 * ci;
            for (int p = 0; p < S2 * S2; p++) {
                memcpy(xl + p * cp, xi + p * ci, sizeof(float) * ci);
                memset(xl + p * cp + ci, 0, sizeof(float) * (cp - ci));
            }
            if (dx) memset(dxl, 0, sizeof(float) * S2 * S2 * cp);
            const float *gi = grad + (int64_t)img * P2 * P2 * co;
            const uint8_t *ii = idx + (int64_t)img * P2 * P2 * co;
            for (int pos = 0; pos < P2 * P2; pos++) {
                for (int oc = 0; oc < co; oc++) {
                    float g = gi[pos * co + oc];
                    mine[(int64_t)co * K * K * cp + oc] += g;
                    if (g == 0.0f) continue;
                    int q = ii[pos * co + oc];
                    int at = (2 * (pos / P2) + (q >> 1)) * S2 + 2 * (pos % P2) + (q & 1);
                    v8 gv = splat(g);
                    for (int kr = 0; kr < K; kr++)
                        for (int ks = 0; ks < K; ks++) {
                            int p = at + kr * S2 + ks;
                            float *acc = mine + ((int64_t)oc * K * K + kr * K + ks) * cp;
                            const float *wk = wt + ((int64_t)oc * K * K + kr * K + ks) * cp;
                            for (int v = 0; v < cp; v += 8) {
                                v8 a = load8(acc + v), d;
                                a += gv * load8(xl + p * cp + v);
                                memcpy(acc + v, &a, sizeof a);
                                if (dx) {
                                    d = load8(dxl + p * cp + v) + gv * load8(wk + v);
                                    memcpy(dxl + p * cp + v, &d, sizeof d);
                                }
                            }
                        }
                }
            }
            if (dx) {
                float *dxi = dx + (int64_t)img * S2 * S2 * ci;
                for (int p = 0; p < S2 * S2; p++) memcpy(dxi + p * ci, dxl + p * cp, sizeof(float) * ci);
            }
        }
    }
    for (int oc = 0; oc < co; oc++) {
        for (int c = 0; c < ci; c++)
            for (int k = 0; k < K * K; k++) {
                float s = 0.0f;
                for (int t = 0; t < threads; t++) s += sums[t * per_thread + ((int64_t)oc * K * K + k) * cp + c];
                dw[((int64_t)oc * ci + c) * K * K + k] = s;
            }
        if (db) {
            float s = 0.0f;
            for (int t = 0; t < threads; t++) s += sums[t * per_thread + (int64_t)co * K * K * cp + oc];
            db[oc] = s;
        }
    }
    free(wt);
    free(sums);
    return 0;
}
