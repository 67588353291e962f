"""Where a training step's time goes: per-layer forward/backward and the SGD update.

Runs the benchmark models of ``bench/compare_torch.py`` through fastconv's public layer
API, one layer call at a time with a clock around each, and prints the median time per
call and its share of the step::

    python bench/profile_layers.py --model maxpool --batch 1 32 128 --threads 2

The clocks add well under a microsecond per call; the step total is also measured
unclocked (the plain ``forward``/``backward``/``step`` a user runs) for comparison. Pairs
that ``Sequential`` runs fused (an activation followed by max pooling) are timed as one row.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from bench.compare_torch import MODEL_INPUTS, FastconvTrainer, build_fastconv_model  # noqa: E402


def profile(name, batch, steps, seed=0):
    """Median seconds per step of each layer's forward and backward, the loss and the
    update, and of a whole unclocked step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + MODEL_INPUTS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    trainer = FastconvTrainer(build_fastconv_model(name))
    model, crit, opt = trainer.model, trainer.criterion, trainer.optimizer
    layers = model.layers
    model.forward(x)                    # validated calls: every layer gets its plan
    model.forward(x)                    # planned: the pairs Sequential runs fused
    fused = model.fused_pairs()
    groups = [(i, i + 1) if i in fused else (i, i) for i in range(len(layers))
              if i - 1 not in fused]    # (first, last) layer index run as one
    rows = [f"{a + 1:2d} " + "+".join(type(m).__name__ for m in layers[a:b + 1])
            for a, b in groups]
    fwd = np.zeros((steps, len(groups)))
    bwd = np.zeros((steps, len(groups)))
    other = np.zeros((steps, 3))        # zero_grad, loss forward+backward, update
    clock = time.perf_counter
    pooled = {}                         # a fused pair's output, for its backward
    for s in range(-3, steps):          # three warm-up steps
        def closure():
            t0 = clock()
            model.zero_grad()
            t1 = clock()
            h = x
            for i, (first, last) in enumerate(groups):
                a = clock()
                if first == last:
                    h = layers[first].forward(h)
                else:       # as Sequential runs the pair: pool, then activate in place
                    h = pooled[i] = layers[first].forward_inplace(layers[last].forward(h))
                if s >= 0:
                    fwd[s, i] = clock() - a
            a = clock()
            loss = crit.forward(h, y)
            g = crit.backward()
            t2 = clock() - a
            for i in range(len(groups) - 1, -1, -1):
                first, last = groups[i]
                a = clock()
                if first == last:
                    g = layers[first].backward(g, need_input_grad=first > 0)
                else:
                    g = layers[last].backward(layers[first].backward_from_output(pooled[i], g),
                                              need_input_grad=first > 0)
                if s >= 0:
                    bwd[s, i] = clock() - a
            if s >= 0:
                other[s, 0], other[s, 1] = t1 - t0, t2
            return loss, trainer.grads
        t_closure = [0.0]

        def timed():
            a = clock()
            r = closure()
            t_closure[0] = clock() - a
            return r
        a = clock()
        opt.step(timed)
        if s >= 0:
            other[s, 2] = clock() - a - t_closure[0]
    plain = []
    for s in range(steps):
        a = clock()
        trainer.step(x, y)
        plain.append(clock() - a)
    return rows, np.median(fwd, 0), np.median(bwd, 0), np.median(other, 0), np.median(plain)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=list(MODEL_INPUTS), default="maxpool")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per batch size (default: about 2 s of work)")
    args = p.parse_args(argv)
    if args.threads:
        fastconv.set_num_threads(args.threads)
    print(f"model {args.model}, {fastconv.get_num_threads()} threads; microseconds per sample")
    for batch in args.batch:
        steps = args.steps or max(5, 2000 // batch)
        rows, f, b, o, plain = profile(args.model, batch, steps)
        total = f.sum() + b.sum() + o.sum()
        us = 1e6 / batch
        print(f"\nbatch {batch}: clocked step {total * us:.1f} us/sample, "
              f"unclocked {plain * us:.1f} us/sample ({batch / plain:.0f} samples/s)")
        print(f"{'layer':24s} {'forward':>9s} {'backward':>9s} {'share':>6s}")
        for r, fi, bi in zip(rows, f, b):
            print(f"{r:24s} {fi * us:9.1f} {bi * us:9.1f} {(fi + bi) / total:6.1%}")
        for label, v in zip(("zero_grad", "loss fwd+bwd", "SGD update"), o):
            print(f"{label:24s} {v * us:9.1f} {'':9s} {v / total:6.1%}")


if __name__ == "__main__":
    main()
