/* C helpers of _conv2d.pyx that Cython renders badly: GCC vector extensions for col2im and a
   row copier. Each is a static inline function written once, in _conv2d_simd_impl.h, and
   instantiated here for float (suffix _f) and double (suffix _d). */
#ifndef FASTCONV_CONV2D_SIMD_H
#define FASTCONV_CONV2D_SIMD_H

#include <string.h>

/* Eight lanes of the dtype, and integer lanes of the same width for masks. */
typedef float fc_v8f __attribute__((vector_size(32)));
typedef int fc_v8i __attribute__((vector_size(32)));
typedef double fc_v8d __attribute__((vector_size(64)));
typedef long long fc_v8l __attribute__((vector_size(64)));

#define FC_T float
#define FC_VT fc_v8f
#define FC_IT fc_v8i
#define FC_NAME(name) name##_f
#include "_conv2d_simd_impl.h"
#undef FC_T
#undef FC_VT
#undef FC_IT
#undef FC_NAME

#define FC_T double
#define FC_VT fc_v8d
#define FC_IT fc_v8l
#define FC_NAME(name) name##_d
#include "_conv2d_simd_impl.h"
#undef FC_T
#undef FC_VT
#undef FC_IT
#undef FC_NAME

#endif
