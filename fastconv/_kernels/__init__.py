"""Compiled kernels. Nothing here is public API: use :mod:`fastconv.functional`."""
