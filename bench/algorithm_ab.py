"""A training step under two convolution-algorithm settings, side by side in one process:
rounds alternate the settings, each round times a few steps (median), and the ratio of the
two medians per round is reported with its median over the rounds::

    python bench/algorithm_ab.py --models convnet-bn cifar cifar-bn --batches 32 128 \\
        --a im2col --b auto --threads 2

``--a``/``--b`` name a setting of :func:`fastconv.functional.set_conv_algorithm`
(``im2col``, ``winograd``, ``auto``); ``--input-grad`` sets
:func:`fastconv.functional.set_input_grad_algorithm` for both sides. The ratio is
time(a) / time(b): above 1, b is faster.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from bench.compare_torch import MODEL_INPUTS, FastconvTrainer, build_fastconv_model  # noqa: E402
from fastconv import functional as F  # noqa: E402

INPUTS = {**MODEL_INPUTS, "convnet-bn": (1, 32, 32)}


def _model(name):
    if name == "convnet-bn":
        return fastconv.nn.build_model("convnet-bn", dtype=np.float32, seed=0)
    return build_fastconv_model(name)


def _median_step(trainer, x, y, steps):
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.step(x, y)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compare(name, batch, a, b, rounds, steps):
    """(median seconds per step under a, under b, median per-round ratio a / b)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + INPUTS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    trainer = FastconvTrainer(_model(name))
    ta, tb = [], []
    for setting in (a, b):          # warm up both: first calls allocate
        F.set_conv_algorithm(setting)
        _median_step(trainer, x, y, 2)
    for _ in range(rounds):
        F.set_conv_algorithm(a)
        ta.append(_median_step(trainer, x, y, steps))
        F.set_conv_algorithm(b)
        tb.append(_median_step(trainer, x, y, steps))
    F.set_conv_algorithm("auto")
    return (float(np.median(ta)), float(np.median(tb)),
            float(np.median(np.array(ta) / np.array(tb))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["convnet-bn", "cifar", "cifar-bn"],
                   choices=sorted(INPUTS))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--a", default="im2col", choices=F.CONV_ALGORITHMS)
    p.add_argument("--b", default="auto", choices=F.CONV_ALGORITHMS)
    p.add_argument("--input-grad", default="auto", choices=F.INPUT_GRAD_ALGORITHMS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=0,
                   help="steps per round (default: about 0.3 s of steps)")
    args = p.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    F.set_input_grad_algorithm(args.input_grad)
    print(f"{args.threads} threads, {args.rounds} rounds; ratio = time({args.a}) / "
          f"time({args.b})")
    print("model        batch  a ms/step  b ms/step  ratio")
    for name in args.models:
        for batch in args.batches:
            steps = args.steps or max(3, min(50, int(0.3 / (0.0025 * batch + 0.002))))
            ta, tb, ratio = compare(name, batch, args.a, args.b, args.rounds, steps)
            print(f"{name:12s} {batch:5d} {ta * 1e3:10.2f} {tb * 1e3:10.2f} {ratio:6.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
