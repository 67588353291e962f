"""Per-image time of the affine warp against the rotation, forward and backward.

Usage (from the repository root)::

    python bench/affine_speed.py                    # 28x28, 32x32; batch 128; 1, 2 threads
    python bench/affine_speed.py --threads 1 --repeats 31
    python bench/affine_speed.py --baseline path/to/old/_rotate.cpython-311-x86_64-linux-gnu.so

``affine``: general matrices (rotation, shear, scale and shift, as
:class:`fastconv.nn.RandomAffine` draws them); ``rotate``: random angles. The first rows go
through :mod:`fastconv.functional` with an ``out`` buffer, as a layer does (validation and
building the matrices included); the ``kernel`` rows call the compiled kernel directly with
prepared matrices. Rotation and affine share one kernel, so their difference is the
sampling pattern (a scaled or sheared grid reads other pixels) and the Python around it.
The acceptance bar is "affine within 2x of rotation per image".

``--baseline`` adds the rotation-only kernel as it was before the generalization (a saved
``_rotate`` extension module with ``rotate_forward(x, cos, sin, y, n_threads)``), called
directly; the kernel rows are then compared with it, to show what the generalization costs.

Method: float32 batches of 1-channel images; each case is warmed up, then samples of
``--calls`` calls alternate between the contenders (affine, rotation, [baseline], affine, ...)
so that load from other processes hits all alike; the table gives the median (and minimum)
over ``--repeats`` samples, in microseconds per image, and the ratio of the medians.
"""
import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from fastconv import functional as F  # noqa: E402
from fastconv._kernels import _rotate as _kernel  # noqa: E402


def _load_baseline(path):
    # The extension's init function is PyInit__rotate: the module must be named _rotate.
    spec = importlib.util.spec_from_file_location("_rotate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contenders(x, rng, baseline, n_threads):
    n = x.shape[0]
    angles = rng.normal(0.0, 0.3, n)
    theta = F.affine_matrices(rng.normal(0.0, 0.3, n), scale=rng.uniform(0.8, 1.2, n),
                              shear=rng.uniform(-0.3, 0.3, n),
                              shift=rng.uniform(-3.0, 3.0, (n, 2)))
    theta_rot = F.affine_matrices(angles)
    y = np.empty_like(x)
    k = _kernel
    # name: (call, the name it is compared with)
    out = {
        "affine fwd": (lambda: F.affine_forward(x, theta, out=y, n_threads=n_threads),
                       "rotate fwd"),
        "rotate fwd": (lambda: F.rotate_forward(x, angles, out=y, n_threads=n_threads),
                       "rotate fwd"),
        "affine bwd": (lambda: F.affine_backward(x, theta, out=y, n_threads=n_threads),
                       "rotate bwd"),
        "rotate bwd": (lambda: F.rotate_backward(x, angles, out=y, n_threads=n_threads),
                       "rotate bwd"),
    }
    ref = "kernel rotate" if baseline is None else "old kernel rotate"
    out.update({
        "kernel affine fwd": (lambda: k.affine_forward(x, theta, y, n_threads), ref + " fwd"),
        "kernel rotate fwd": (lambda: k.affine_forward(x, theta_rot, y, n_threads),
                              ref + " fwd"),
        "kernel affine bwd": (lambda: k.affine_backward(x, theta, y, n_threads), ref + " bwd"),
        "kernel rotate bwd": (lambda: k.affine_backward(x, theta_rot, y, n_threads),
                              ref + " bwd"),
    })
    if baseline is not None:
        cos_t, sin_t = np.cos(angles), np.sin(angles)
        out["old kernel rotate fwd"] = (
            lambda: baseline.rotate_forward(x, cos_t, sin_t, y, n_threads), ref + " fwd")
        out["old kernel rotate bwd"] = (
            lambda: baseline.rotate_backward(x, cos_t, sin_t, y, n_threads), ref + " bwd")
    return out


def _time(fns, calls, repeats):
    """{name: [seconds per call, one per sample]}, samples alternating between names."""
    for f, _ in fns.values():
        for _ in range(3):
            f()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (f, _) in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            samples[name].append((time.perf_counter() - t0) / calls)
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32],
                        help="image sides to time (default: 28 32)")
    parser.add_argument("--batch", type=int, default=128, help="images per batch (128)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to time (default: 1 2)")
    parser.add_argument("--repeats", type=int, default=21, help="samples per contender (21)")
    parser.add_argument("--calls", type=int, default=10, help="calls per sample (10)")
    parser.add_argument("--baseline", help="a saved pre-generalization _rotate extension")
    args = parser.parse_args(argv)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    rng = np.random.default_rng(0)
    print(f"# {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"fastconv={fastconv.__version__} batch={args.batch} float32 "
          f"repeats={args.repeats} calls={args.calls}")
    print(f"{'op':22s} {'shape':>10s} {'threads':>7s} {'median us/img':>14s} "
          f"{'min us/img':>11s} {'median / median of':>18s}")
    for side in args.sizes:
        x = rng.standard_normal((args.batch, 1, side, side)).astype(np.float32)
        for n_threads in args.threads:
            fns = _contenders(x, rng, baseline, n_threads)
            samples = _time(fns, args.calls, args.repeats)
            med = {k: statistics.median(v) * 1e6 / args.batch for k, v in samples.items()}
            low = {k: min(v) * 1e6 / args.batch for k, v in samples.items()}
            for name, (_, ref) in fns.items():
                print(f"{name:22s} {side:>4d}x{side:<5d} {n_threads:>7d} {med[name]:>14.3f} "
                      f"{low[name]:>11.3f} {med[name] / med[ref]:>7.2f} ({ref})")


if __name__ == "__main__":
    main()
