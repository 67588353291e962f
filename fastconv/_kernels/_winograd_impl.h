/* The body of _winograd.h, included once per dtype with FC_T (the element type) and FC_NAME
   (the name suffix) defined. No include guard: it is meant to be included twice.

   Winograd F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
   2016): a 2x2 block of a 3x3 convolution's output is A^T [(G g G^T) .* (B^T d B)] A for the
   4x4 input tile d under it and the filter g, with

       B^T = [1  0 -1  0]     G = [1    0    0  ]     A^T = [1  1  1  0]
             [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
             [0 -1  1  0]         [1/2 -1/2  1/2]
             [0  1  0 -1]         [0    0    1  ]

   16 multiplications per output block and input channel instead of 36; summed over the input
   channels, the 16 element-wise products become 16 matrix products (done by the BLAS). Only
   additions and halvings here: B and A hold 0 and +-1, G's 1/2 is exact. Every loop runs over
   a row of tiles with contiguous reads or writes, so that the compiler vectorizes it. */

/* V[xi*ldv + c*nt + (a - a0)*tw + b] = (B^T d B)[xi] for the tile (a, b) of channel c, tile
   rows a in [a0, a1), b < tw, xi = 4*i + j: the input transform of a block of tile rows of
   one sample x (C, H, W) with zero padding (ph, pw). Tile (a, b) covers input rows 2a - ph ..
   2a - ph + 3 and columns 2b - pw .. 2b - pw + 3. scratch holds
   (2*(a1 - a0) + 6)*(2*tw + 2) elements. ldv should not be a multiple of 1024: the 16
   output streams would then share cache sets (measured: 2.4x slower at ldv = 4096). */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_input_impl)(
    const FC_T* x, int C, int H, int W, int ph, int pw, int tw, int a0, int a1, FC_T* V,
    long ldv, long nt, FC_T* scratch)
{
    const int wp = 2 * tw + 2;           /* >= W + pw: a padded input row */
    const int rows = 2 * (a1 - a0) + 2;  /* input rows under the block's tiles */
    FC_T* d = scratch;                   /* the block's input rows, zero-padded */
    FC_T* t = scratch + (long)rows * wp; /* the 4 rows of B^T d of one tile row */
    /* The padding (whole rows above and below the input, columns left and right of it) is
       the same for every channel: zeroed once, and only the input's own columns copied. */
    memset(d, 0, (long)rows * wp * sizeof(FC_T));
    for (int c = 0; c < C; c++) {
        const FC_T* xc = x + (long)c * H * W;
        for (int r = 0; r < rows; r++) {
            int row = 2 * a0 - ph + r;
            if (row >= 0 && row < H)
                memcpy(d + (long)r * wp + pw, xc + (long)row * W, W * sizeof(FC_T));
        }
        for (int a = a0; a < a1; a++) {
            {
                const FC_T* restrict d0 = d + (long)2 * (a - a0) * wp;
                const FC_T* restrict d1 = d0 + wp;
                const FC_T* restrict d2 = d0 + 2 * wp;
                const FC_T* restrict d3 = d0 + 3 * wp;
                FC_T* restrict t0 = t;
                FC_T* restrict t1 = t + wp;
                FC_T* restrict t2 = t + 2 * wp;
                FC_T* restrict t3 = t + 3 * wp;
                for (int k = 0; k < wp; k++) {
                    t0[k] = d0[k] - d2[k];
                    t1[k] = d1[k] + d2[k];
                    t2[k] = d2[k] - d1[k];
                    t3[k] = d1[k] - d3[k];
                }
            }
            for (int i = 0; i < 4; i++) {
                const FC_T* restrict ti = t + i * wp;
                long base = (long)c * nt + (long)(a - a0) * tw;
                FC_T* restrict v0 = V + (4 * i + 0) * ldv + base;
                FC_T* restrict v1 = V + (4 * i + 1) * ldv + base;
                FC_T* restrict v2 = V + (4 * i + 2) * ldv + base;
                FC_T* restrict v3 = V + (4 * i + 3) * ldv + base;
                for (int b = 0; b < tw; b++) {
                    FC_T e0 = ti[2 * b], o0 = ti[2 * b + 1];
                    FC_T e1 = ti[2 * b + 2], o1 = ti[2 * b + 3];
                    v0[b] = e0 - e1;
                    v1[b] = o0 + e1;
                    v2[b] = e1 - o0;
                    v3[b] = o0 - o1;
                }
            }
        }
    }
}

/* fc_wino_input_impl with the sizes of "same" 3x3 layers on common planes as constants (the
   copies and loops then compile to straight vector code: about twice as fast as with sizes
   known only at run time). */
static void FC_NAME(fc_wino_input)(const FC_T* x, int C, int H, int W, int ph, int pw, int tw,
                                   int a0, int a1, FC_T* V, long ldv, long nt, FC_T* scratch)
{
    if (pw == 1 && W == 2 * tw) {
        switch (tw) {
#define FC_CASE(TW) case TW: FC_NAME(fc_wino_input_impl)(x, C, H, 2 * TW, ph, 1, TW, a0, a1, \
                                                         V, ldv, nt, scratch); return;
        FC_CASE(4) FC_CASE(7) FC_CASE(8) FC_CASE(12) FC_CASE(14) FC_CASE(16)
#undef FC_CASE
        default: break;
        }
    }
    FC_NAME(fc_wino_input_impl)(x, C, H, W, ph, pw, tw, a0, a1, V, ldv, nt, scratch);
}

/* The output transform of the same block: y[f, 2a + r, 2b + s] = (A^T m A)[r, s] + bias[f]
   (no bias when bias is NULL) with m[xi] = M[f*fs + xi*xs + (a - a0)*tw + b], for the output
   pixels that exist (OH, OW may be odd). y is one sample's (F, OH, OW) output. The 16 streams
   m[xi] are read in one loop: with xs known at compile time (fc_wino_output) they take one
   address register; with run-time strides 16 registers, which spill (about 3x slower). */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_output_impl)(
    const FC_T* M, long xs, long fs, int F, const FC_T* bias, FC_T* y, int OH, int OW, int tw,
    int a0, int a1)
{
    const int full = OW / 2;             /* tiles whose two columns both exist */
    for (int f = 0; f < F; f++) {
        FC_T bf = bias ? bias[f] : (FC_T)0;
        for (int a = a0; a < a1; a++) {
            const FC_T* restrict m = M + (long)f * fs + (long)(a - a0) * tw;
            FC_T* restrict y0 = y + ((long)f * OH + 2 * a) * OW;
            FC_T* restrict y1 = y0 + OW;
            int second = 2 * a + 1 < OH;
            for (int b = 0; b < tw; b++) {
                FC_T m00 = m[0 * xs + b], m01 = m[1 * xs + b];
                FC_T m02 = m[2 * xs + b], m03 = m[3 * xs + b];
                FC_T m10 = m[4 * xs + b], m11 = m[5 * xs + b];
                FC_T m12 = m[6 * xs + b], m13 = m[7 * xs + b];
                FC_T m20 = m[8 * xs + b], m21 = m[9 * xs + b];
                FC_T m22 = m[10 * xs + b], m23 = m[11 * xs + b];
                FC_T m30 = m[12 * xs + b], m31 = m[13 * xs + b];
                FC_T m32 = m[14 * xs + b], m33 = m[15 * xs + b];
                /* A^T m: rows r0 = m0 + m1 + m2, r1 = m1 - m2 - m3 */
                FC_T r00 = m00 + m10 + m20, r01 = m01 + m11 + m21;
                FC_T r02 = m02 + m12 + m22, r03 = m03 + m13 + m23;
                FC_T r10 = m10 - m20 - m30, r11 = m11 - m21 - m31;
                FC_T r12 = m12 - m22 - m32, r13 = m13 - m23 - m33;
                FC_T p00 = r00 + r01 + r02 + bf, p01 = r01 - r02 - r03 + bf;
                FC_T p10 = r10 + r11 + r12 + bf, p11 = r11 - r12 - r13 + bf;
                if (b < full) {
                    y0[2 * b] = p00;
                    y0[2 * b + 1] = p01;
                    if (second) {
                        y1[2 * b] = p10;
                        y1[2 * b + 1] = p11;
                    }
                } else {
                    y0[2 * b] = p00;
                    if (second)
                        y1[2 * b] = p10;
                }
            }
        }
    }
}

/* The layers whose blocks have these constant strides (square "same" planes of 8 to 32
   pixels, the default block size) run a copy of fc_wino_output_impl compiled for them. */
static void FC_NAME(fc_wino_output)(const FC_T* M, long xs, long fs, int F, const FC_T* bias,
                                    FC_T* y, int OH, int OW, int tw, int a0, int a1)
{
    if (OW == 2 * tw && fs == 16 * xs) {
        switch (tw) {
#define FC_CASE(TW) case TW: if (xs == FC_WINO_NT(TW)) { \
            FC_NAME(fc_wino_output_impl)(M, FC_WINO_NT(TW), 16 * FC_WINO_NT(TW), F, bias, y, \
                                         OH, 2 * TW, TW, a0, a1); return; } break;
        FC_CASE(4) FC_CASE(7) FC_CASE(8) FC_CASE(12) FC_CASE(14) FC_CASE(16)
#undef FC_CASE
        default: break;
        }
    }
    FC_NAME(fc_wino_output_impl)(M, xs, fs, F, bias, y, OH, OW, tw, a0, a1);
}

/* U[xi*F*C + f*C + c] = (G g G^T)[xi] for filters f in [f0, f1): the filter transform of a
   (F, C, 3, 3) weight. */
static void FC_NAME(fc_wino_filter)(const FC_T* w, int F, int C, int f0, int f1, FC_T* U)
{
    const long fc = (long)F * C;
    for (int f = f0; f < f1; f++) {
        for (int c = 0; c < C; c++) {
            const FC_T* g = w + ((long)f * C + c) * 9;
            FC_T h[4][3];                 /* G g: 4 rows of 3 */
            for (int v = 0; v < 3; v++) {
                FC_T g0 = g[v], g1 = g[3 + v], g2 = g[6 + v];
                h[0][v] = g0;
                h[1][v] = (g0 + g1 + g2) * (FC_T)0.5;
                h[2][v] = (g0 - g1 + g2) * (FC_T)0.5;
                h[3][v] = g2;
            }
            for (int i = 0; i < 4; i++) {
                FC_T g0 = h[i][0], g1 = h[i][1], g2 = h[i][2];
                FC_T* u = U + (long)(4 * i) * fc + (long)f * C + c;
                u[0] = g0;
                u[fc] = (g0 + g1 + g2) * (FC_T)0.5;
                u[2 * fc] = (g0 - g1 + g2) * (FC_T)0.5;
                u[3 * fc] = g2;
            }
        }
    }
}

/* Z[f*fs + xi*xs + (a - a0)*tw + b] = (A dY A^T)[xi] for the 2x2 block dY of output gradient
   under tile (a, b) of filter f (zero where the block leaves the OH x OW output): the
   transform of a block of tile rows of one sample's gradient gy (F, OH, OW) for the weight
   gradient, dL/dU[xi] = sum over tiles of Z[xi] V[xi], with A = [1 0; 1 1; 1 -1; 0 -1].
   Compiled for the weight gradient's constant stride (FC_WINO_WEIGHT_TILES) as
   fc_wino_output. */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino_grad_output_impl)(
    const FC_T* gy, int F, int OH, int OW, int tw, int a0, int a1, FC_T* Z, long xs, long fs)
{
    const int full = OW / 2;
    for (int f = 0; f < F; f++) {
        for (int a = a0; a < a1; a++) {
            const FC_T* g0 = gy + ((long)f * OH + 2 * a) * OW;
            const FC_T* g1 = g0 + OW;
            int second = 2 * a + 1 < OH;
            FC_T* restrict z = Z + (long)f * fs + (long)(a - a0) * tw;
            for (int b = 0; b < tw; b++) {
                FC_T p = g0[2 * b], q = b < full ? g0[2 * b + 1] : (FC_T)0;
                FC_T r = second ? g1[2 * b] : (FC_T)0;
                FC_T s = second && b < full ? g1[2 * b + 1] : (FC_T)0;
                /* rows of A dY: (p, q), (p + r, q + s), (p - r, q - s), (-r, -s); each row
                   (u, v) times A^T: (u, u + v, u - v, -v). */
                FC_T u1 = p + r, v1 = q + s, u2 = p - r, v2 = q - s;
                z[0 * xs + b] = p;
                z[1 * xs + b] = p + q;
                z[2 * xs + b] = p - q;
                z[3 * xs + b] = -q;
                z[4 * xs + b] = u1;
                z[5 * xs + b] = u1 + v1;
                z[6 * xs + b] = u1 - v1;
                z[7 * xs + b] = -v1;
                z[8 * xs + b] = u2;
                z[9 * xs + b] = u2 + v2;
                z[10 * xs + b] = u2 - v2;
                z[11 * xs + b] = -v2;
                z[12 * xs + b] = -r;
                z[13 * xs + b] = -(r + s);
                z[14 * xs + b] = s - r;
                z[15 * xs + b] = s;
            }
        }
    }
}

static void FC_NAME(fc_wino_grad_output)(const FC_T* gy, int F, int OH, int OW, int tw,
                                         int a0, int a1, FC_T* Z, long xs, long fs)
{
    if (OW == 2 * tw && fs == 16 * xs) {
        switch (tw) {
#define FC_CASE(TW) case TW: if (xs == FC_WINO_WEIGHT_TILES) { \
            FC_NAME(fc_wino_grad_output_impl)(gy, F, OH, 2 * TW, TW, a0, a1, Z, \
                                              FC_WINO_WEIGHT_TILES, \
                                              16 * FC_WINO_WEIGHT_TILES); return; } \
            break;
        FC_CASE(4) FC_CASE(7) FC_CASE(8) FC_CASE(12) FC_CASE(14) FC_CASE(16)
#undef FC_CASE
        default: break;
        }
    }
    FC_NAME(fc_wino_grad_output_impl)(gy, F, OH, OW, tw, a0, a1, Z, xs, fs);
}

/* gw[f, c] = beta*gw[f, c] + G^T dU[:, f, c] G for filters f in [f0, f1), dU[xi*F*C + f*C + c]
   (the adjoint of fc_wino_filter): the weight gradient from its Winograd-domain sums. */
static void FC_NAME(fc_wino_filter_grad)(const FC_T* dU, int F, int C, int f0, int f1,
                                         FC_T beta, FC_T* gw)
{
    const long fc = (long)F * C;
    for (int f = f0; f < f1; f++) {
        for (int c = 0; c < C; c++) {
            const FC_T* u = dU + (long)f * C + c;
            FC_T h[4][3];                 /* dU G: 4 rows of 3 */
            for (int i = 0; i < 4; i++) {
                FC_T d0 = u[(4 * i) * fc], d1 = u[(4 * i + 1) * fc];
                FC_T d2 = u[(4 * i + 2) * fc], d3 = u[(4 * i + 3) * fc];
                h[i][0] = d0 + (d1 + d2) * (FC_T)0.5;
                h[i][1] = (d1 - d2) * (FC_T)0.5;
                h[i][2] = (d1 + d2) * (FC_T)0.5 + d3;
            }
            FC_T* g = gw + ((long)f * C + c) * 9;
            for (int v = 0; v < 3; v++) {
                FC_T r0 = h[0][v] + (h[1][v] + h[2][v]) * (FC_T)0.5;
                FC_T r1 = (h[1][v] - h[2][v]) * (FC_T)0.5;
                FC_T r2 = (h[1][v] + h[2][v]) * (FC_T)0.5 + h[3][v];
                g[v] = beta == 0 ? r0 : beta * g[v] + r0;
                g[3 + v] = beta == 0 ? r1 : beta * g[3 + v] + r1;
                g[6 + v] = beta == 0 ? r2 : beta * g[6 + v] + r2;
            }
        }
    }
}
