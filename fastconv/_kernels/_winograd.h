/* The transforms of _winograd.pyx (written in C for `restrict`, so that the compiler
   vectorizes each loop without run-time alias checks), instantiated from _winograd_impl.h for
   float (suffix _f) and double (suffix _d). */
#ifndef FASTCONV_WINOGRAD_H
#define FASTCONV_WINOGRAD_H

#include <string.h>

/* Tiles per block of a square plane of tw x tw tiles with _winograd.pyx's default block
   (min(tw, 128 / tw) tile rows): the stride between the 16 matrices of a block's products,
   compiled in as a constant for common planes (see fc_wino_output). */
#define FC_WINO_NT(TW) ((long)((TW) < 128 / (TW) ? (TW) : 128 / (TW)) * (TW))
/* Tiles the weight gradient gathers (across samples) before its 16 GEMMs: their inner
   dimension. _winograd.pyx's _WEIGHT_TILES. */
#define FC_WINO_WEIGHT_TILES 128L
/* FC_WINO_NT for F(4x4, 3x3): min(tw, 128 / tw) tile rows of tw tiles. */
#define FC_WINO4_NT(TW) FC_WINO_NT(TW)

#define FC_T float
#define FC_NAME(name) name##_f
#include "_winograd_impl.h"
#include "_winograd4_impl.h"
#undef FC_T
#undef FC_NAME

#define FC_T double
#define FC_NAME(name) name##_d
#include "_winograd_impl.h"
#include "_winograd4_impl.h"
#undef FC_T
#undef FC_NAME

#endif
