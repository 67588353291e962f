/* The body of _conv2d_simd.h, included once per dtype with FC_T (the element type), FC_VT
   (8 lanes of it), FC_IT (8 integer lanes as wide) and FC_NAME (the name suffix) defined.
   No include guard: it is meant to be included twice. */

/* The 8 elements src[j0 .. j0+7], those whose column j0 + l is not in [0, ow) cleared
   bitwise: they are read (they may hold anything, NaN included) but never added. */
static inline FC_VT FC_NAME(fc_masked)(const FC_T* src, int j0, int ow)
{
    const FC_IT iota = {0, 1, 2, 3, 4, 5, 6, 7};
    FC_VT r;
    memcpy(&r, src + j0, sizeof r);
    return (FC_VT)((FC_IT)r & ((iota >= -j0) & (iota < ow - j0)));
}

/* xrow[w0 .. w0+7] = acc, clipped at the row's end W. */
static inline void FC_NAME(fc_store)(FC_T* xrow, int w0, int W, FC_VT acc)
{
    if (W - w0 >= 8)
        memcpy(xrow + w0, &acc, sizeof acc);
    else
        for (int l = 0; l < W - w0; l++)
            xrow[w0 + l] = acc[l];
}

/* Rows h and h+1 (when h+1 < H) of one channel of x in _col2im_unit_stride, in chunks of 8
   elements. Each chunk is summed over its taps (u, v), in that order, in a vector register
   and stored once; the two rows and two neighbouring chunks of each are four independent
   sums, so the adds overlap instead of waiting on each other's latency. A tap adds the 8
   elements of its col row that land on the chunk, masked to the columns j in [0, ow) that
   exist. col_c is the channel's first im2col row, p the row length. Written in C with GCC
   vector extensions: Cython's rendering of the masked add (temporaries, branches) stayed
   scalar. */
static inline void FC_NAME(fc_col2im_rows)(const FC_T* col_c, FC_T* x_c, int H, int W, int h,
                                           int kh, int kw, int sh, int ph, int pw, int oh,
                                           int ow, long p)
{
    int two = h + 1 < H;
    for (int w0 = 0; w0 < W; w0 += 16) {
        FC_VT a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0};  /* row h/h+1, chunk w0/w0+8 */
        int second = w0 + 8 < W;
        for (int u = 0; u < kh; u++) {
            int t0 = h + ph - u, t1 = t0 + 1;
            int i0 = sh == 1 ? t0 : (t0 >= 0 ? t0 / sh : -1);
            int i1 = sh == 1 ? t1 : (t1 >= 0 ? t1 / sh : -1);
            int ok0 = t0 >= 0 && i0 < oh && i0 * sh == t0;
            int ok1 = two && t1 >= 0 && i1 < oh && i1 * sh == t1;
            if (!ok0 && !ok1)
                continue;
            for (int v = 0; v < kw; v++) {
                const FC_T* row_uv = col_c + ((long)u * kw + v) * p;
                int j0 = w0 + pw - v, j1 = j0 + 8;
                if (ok0) {
                    const FC_T* r = row_uv + (long)i0 * ow;
                    if (j0 > -8 && j0 < ow)
                        a00 += FC_NAME(fc_masked)(r, j0, ow);
                    if (second && j1 > -8 && j1 < ow)
                        a01 += FC_NAME(fc_masked)(r, j1, ow);
                }
                if (ok1) {
                    const FC_T* r = row_uv + (long)i1 * ow;
                    if (j0 > -8 && j0 < ow)
                        a10 += FC_NAME(fc_masked)(r, j0, ow);
                    if (second && j1 > -8 && j1 < ow)
                        a11 += FC_NAME(fc_masked)(r, j1, ow);
                }
            }
        }
        FC_T* xr0 = x_c + (long)h * W;
        FC_NAME(fc_store)(xr0, w0, W, a00);
        if (second)
            FC_NAME(fc_store)(xr0, w0 + 8, W, a01);
        if (two) {
            FC_T* xr1 = xr0 + W;
            FC_NAME(fc_store)(xr1, w0, W, a10);
            if (second)
                FC_NAME(fc_store)(xr1, w0 + 8, W, a11);
        }
    }
}

/* rows x n elements from src (row stride src_step) to dst (row stride dst_step), no
   overlap: each row as 32-byte blocks, the last one overlapping its neighbour instead of a
   scalar tail, and rows of one to two blocks (ow = 10 floats in the homework's 64->64
   layer) without a loop. The row-by-row helper in Cython spent more on its loop than on
   the copy. */
static inline void FC_NAME(fc_copy_rows)(FC_T* dst, long dst_step, const FC_T* src,
                                         long src_step, long rows, long n)
{
    const long b = 32 / (long)sizeof(FC_T);
    if (n < b) {
        for (long r = 0; r < rows; r++)
            for (long j = 0; j < n; j++)
                dst[r * dst_step + j] = src[r * src_step + j];
    } else if (n <= 2 * b) {
        for (long r = 0; r < rows; r++) {
            memcpy(dst + r * dst_step, src + r * src_step, 32);
            memcpy(dst + r * dst_step + n - b, src + r * src_step + n - b, 32);
        }
    } else {
        for (long r = 0; r < rows; r++) {
            long j = 0;
            for (; j + b < n; j += b)
                memcpy(dst + r * dst_step + j, src + r * src_step + j, 32);
            memcpy(dst + r * dst_step + n - b, src + r * src_step + n - b, 32);
        }
    }
}
