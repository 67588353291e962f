/* The F(4x4, 3x3) transforms of _winograd.pyx, included once per dtype with FC_T and FC_NAME
   defined (see _winograd_impl.h for F(2x2, 3x3) and the conventions). No include guard.

   A 4x4 block of output from the 6x6 input tile under it: 36 multiplications per input
   channel instead of 144 (4x fewer; F(2x2, 3x3) saves 2.25x), with the transforms of
   Lavin and Gray (2016), interpolation points 0, +-1, +-2 and infinity:

       B^T = [4  0 -5  0  1  0]    G = [ 1/4     0     0  ]    A^T = [1  1  1  1  1  0]
             [0 -4 -4  1  1  0]        [-1/6  -1/6  -1/6  ]          [0  1 -1  2 -2  0]
             [0  4 -4 -1  1  0]        [-1/6   1/6  -1/6  ]          [0  1  1  4  4  0]
             [0 -2 -1  2  1  0]        [ 1/24  1/12  1/6  ]          [0  1 -1  8 -8  1]
             [0  2 -1 -2  1  0]        [ 1/24 -1/12  1/6  ]
             [0  4  0 -5  0  1]        [ 0     0     1    ]

   Their larger coefficients cost accuracy: see docs/guide/performance.rst. Tiles step by 4;
   the transformed values are 36 per 16 pixels (F(2x2, 3x3): 16 per 4). */

/* The 6 values of B^T e for e = (e0 .. e5). */
#define FC_W4_BT(e0, e1, e2, e3, e4, e5, o0, o1, o2, o3, o4, o5) do { \
        o0 = 4 * (e0) - 5 * (e2) + (e4);                               \
        o1 = -4 * ((e1) + (e2)) + (e3) + (e4);                         \
        o2 = 4 * ((e1) - (e2)) - (e3) + (e4);                          \
        o3 = 2 * ((e3) - (e1)) - (e2) + (e4);                          \
        o4 = 2 * ((e1) - (e3)) - (e2) + (e4);                          \
        o5 = 4 * (e1) - 5 * (e3) + (e5);                               \
    } while (0)

/* V[xi*ldv + c*nt + (a - a0)*tw + b] = (B^T d B)[xi], xi = 6*i + j, for the 6x6 tile (a, b)
   of channel c (input rows 4a - ph .., columns 4b - pw ..), tile rows a in [a0, a1).
   scratch holds (4*(a1 - a0) + 8)*(4*tw + 2) elements. */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino4_input_impl)(
    const FC_T* x, int C, int H, int W, int ph, int pw, int tw, int a0, int a1, FC_T* V,
    long ldv, long nt, FC_T* scratch)
{
    const int wp = 4 * tw + 2;           /* >= W + pw */
    const int rows = 4 * (a1 - a0) + 2;
    FC_T* d = scratch;
    FC_T* t = scratch + (long)rows * wp; /* the 6 rows of B^T d of one tile row */
    memset(d, 0, (long)rows * wp * sizeof(FC_T));
    for (int c = 0; c < C; c++) {
        const FC_T* xc = x + (long)c * H * W;
        for (int r = 0; r < rows; r++) {
            int row = 4 * a0 - ph + r;
            if (row >= 0 && row < H)
                memcpy(d + (long)r * wp + pw, xc + (long)row * W, W * sizeof(FC_T));
        }
        for (int a = a0; a < a1; a++) {
            const FC_T* restrict d0 = d + (long)4 * (a - a0) * wp;
            FC_T* restrict t0 = t;
            for (int k = 0; k < wp; k++) {
                FC_T o0, o1, o2, o3, o4, o5;
                FC_W4_BT(d0[k], d0[wp + k], d0[2 * wp + k], d0[3 * wp + k], d0[4 * wp + k],
                         d0[5 * wp + k], o0, o1, o2, o3, o4, o5);
                t0[k] = o0;
                t0[wp + k] = o1;
                t0[2 * wp + k] = o2;
                t0[3 * wp + k] = o3;
                t0[4 * wp + k] = o4;
                t0[5 * wp + k] = o5;
            }
            long base = (long)c * nt + (long)(a - a0) * tw;
            for (int i = 0; i < 6; i++) {
                const FC_T* restrict ti = t + i * wp;
                FC_T* restrict v = V + (6 * i) * ldv + base;
                for (int b = 0; b < tw; b++) {
                    const FC_T* e = ti + 4 * b;
                    FC_T o0, o1, o2, o3, o4, o5;
                    FC_W4_BT(e[0], e[1], e[2], e[3], e[4], e[5], o0, o1, o2, o3, o4, o5);
                    v[b] = o0;
                    v[ldv + b] = o1;
                    v[2 * ldv + b] = o2;
                    v[3 * ldv + b] = o3;
                    v[4 * ldv + b] = o4;
                    v[5 * ldv + b] = o5;
                }
            }
        }
    }
}

static void FC_NAME(fc_wino4_input)(const FC_T* x, int C, int H, int W, int ph, int pw, int tw,
                                    int a0, int a1, FC_T* V, long ldv, long nt, FC_T* scratch)
{
    if (pw == 1 && W == 4 * tw) {
        switch (tw) {
#define FC_CASE(TW) case TW: FC_NAME(fc_wino4_input_impl)(x, C, H, 4 * TW, ph, 1, TW, a0, a1, \
                                                          V, ldv, nt, scratch); return;
        FC_CASE(2) FC_CASE(4) FC_CASE(6) FC_CASE(7) FC_CASE(8)
#undef FC_CASE
        default: break;
        }
    }
    FC_NAME(fc_wino4_input_impl)(x, C, H, W, ph, pw, tw, a0, a1, V, ldv, nt, scratch);
}

/* y[f, 4a + r, 4b + s] = (A^T m A)[r, s] + bias[f] with m[xi] = M[f*fs + xi*xs + (a - a0)*tw
   + b], xi = 6*i + j, for the output pixels that exist. In two passes over chunks of a tile
   row (A^T over i for each column j into s, then s A), each reading 6 streams. */
static inline __attribute__((always_inline)) void FC_NAME(fc_wino4_output_impl)(
    const FC_T* M, long xs, long fs, int F, const FC_T* bias, FC_T* y, int OH, int OW, int tw,
    int a0, int a1)
{
    enum { CHUNK = 16 };
    FC_T s[4][6][CHUNK];
    FC_T o[4][CHUNK];
    for (int f = 0; f < F; f++) {
        FC_T bf = bias ? bias[f] : (FC_T)0;
        for (int a = a0; a < a1; a++) {
            const FC_T* m = M + (long)f * fs + (long)(a - a0) * tw;
            for (int b0 = 0; b0 < tw; b0 += CHUNK) {
                int nb = tw - b0 < CHUNK ? tw - b0 : CHUNK;
                for (int j = 0; j < 6; j++) {
                    const FC_T* restrict q = m + j * xs + b0;
                    for (int b = 0; b < nb; b++) {
                        FC_T m0 = q[b], m1 = q[6 * xs + b], m2 = q[12 * xs + b];
                        FC_T m3 = q[18 * xs + b], m4 = q[24 * xs + b], m5 = q[30 * xs + b];
                        FC_T p = m1 + m2, n = m1 - m2, p2 = m3 + m4, n2 = m3 - m4;
                        s[0][j][b] = m0 + p + p2;
                        s[1][j][b] = n + 2 * n2;
                        s[2][j][b] = p + 4 * p2;
                        s[3][j][b] = n + 8 * n2 + m5;
                    }
                }
                for (int r = 0; r < 4; r++) {
                    int row = 4 * a + r;
                    if (row >= OH)
                        break;
                    FC_T* restrict yr = y + ((long)f * OH + row) * OW + 4 * b0;
                    for (int b = 0; b < nb; b++) {
                        FC_T e0 = s[r][0][b], e1 = s[r][1][b], e2 = s[r][2][b];
                        FC_T e3 = s[r][3][b], e4 = s[r][4][b], e5 = s[r][5][b];
                        FC_T p = e1 + e2, n = e1 - e2, p2 = e3 + e4, n2 = e3 - e4;
                        o[0][b] = e0 + p + p2 + bf;
                        o[1][b] = n + 2 * n2 + bf;
                        o[2][b] = p + 4 * p2 + bf;
                        o[3][b] = n + 8 * n2 + e5 + bf;
                    }
                    int left = OW - 4 * b0;      /* output columns from this chunk on */
                    if (left >= 4 * nb) {
                        for (int b = 0; b < nb; b++) {
                            yr[4 * b] = o[0][b];
                            yr[4 * b + 1] = o[1][b];
                            yr[4 * b + 2] = o[2][b];
                            yr[4 * b + 3] = o[3][b];
                        }
                    } else {
                        for (int k = 0; k < left; k++)
                            yr[k] = o[k % 4][k / 4];
                    }
                }
            }
        }
    }
}

static void FC_NAME(fc_wino4_output)(const FC_T* M, long xs, long fs, int F, const FC_T* bias,
                                     FC_T* y, int OH, int OW, int tw, int a0, int a1)
{
    if (OW == 4 * tw && fs == 36 * xs) {
        switch (tw) {
#define FC_CASE(TW) case TW: if (xs == FC_WINO4_NT(TW)) { \
            FC_NAME(fc_wino4_output_impl)(M, FC_WINO4_NT(TW), 36 * FC_WINO4_NT(TW), F, bias, \
                                          y, OH, 4 * TW, TW, a0, a1); return; } break;
        FC_CASE(2) FC_CASE(4) FC_CASE(6) FC_CASE(7) FC_CASE(8)
#undef FC_CASE
        default: break;
        }
    }
    FC_NAME(fc_wino4_output_impl)(M, xs, fs, F, bias, y, OH, OW, tw, a0, a1);
}

/* U[xi*F*C + f*C + c] = (G g G^T)[xi] for filters f in [f0, f1). */
static void FC_NAME(fc_wino4_filter)(const FC_T* w, int F, int C, int f0, int f1, FC_T* U)
{
    const long fc = (long)F * C;
    const FC_T q = (FC_T)0.25, s6 = (FC_T)1 / 6, s12 = (FC_T)1 / 12, s24 = (FC_T)1 / 24;
    for (int f = f0; f < f1; f++) {
        for (int c = 0; c < C; c++) {
            const FC_T* g = w + ((long)f * C + c) * 9;
            FC_T h[6][3];
            for (int v = 0; v < 3; v++) {
                FC_T g0 = g[v], g1 = g[3 + v], g2 = g[6 + v];
                h[0][v] = q * g0;
                h[1][v] = -s6 * (g0 + g1 + g2);
                h[2][v] = -s6 * (g0 - g1 + g2);
                h[3][v] = s24 * g0 + s12 * g1 + s6 * g2;
                h[4][v] = s24 * g0 - s12 * g1 + s6 * g2;
                h[5][v] = g2;
            }
            for (int i = 0; i < 6; i++) {
                FC_T g0 = h[i][0], g1 = h[i][1], g2 = h[i][2];
                FC_T* u = U + (long)(6 * i) * fc + (long)f * C + c;
                u[0] = q * g0;
                u[fc] = -s6 * (g0 + g1 + g2);
                u[2 * fc] = -s6 * (g0 - g1 + g2);
                u[3 * fc] = s24 * g0 + s12 * g1 + s6 * g2;
                u[4 * fc] = s24 * g0 - s12 * g1 + s6 * g2;
                u[5 * fc] = g2;
            }
        }
    }
}
