"""Training throughput on a busy host: alone, beside a busy neighbour, two at once (issue 11).

Scenarios, each for fastconv and PyTorch with their *default* thread settings (neither script
calls ``set_num_threads``: what a user gets), max-pool ConvNet, float32, plain SGD:

* ``alone``: one training process;
* ``neighbour``: one training process beside one pure-Python busy loop (``while True: pass``,
  a browser tab, a colleague's script);
* ``two``: two training processes started together (a user running two experiments); their
  samples/s are summed.

Every training process is fresh (``compare_torch.py --busy-worker``): it imports its
framework, builds the model, warms up, says "ready" and waits; when every process of the
scenario is ready the driver says "go" to all at once, and each trains for ``seconds`` and
reports its samples/s over exactly that window. Rounds alternate the frameworks and, within a
framework, the scenarios; the fractions ``neighbour / alone`` and ``two / alone`` are taken
per round (paired, so a slow minute of the host hits both terms) and their medians reported.
"""
import json
import os
import statistics
import subprocess
import sys
import time

__all__ = ["SCENARIOS", "run_busy", "busy_worker_main", "format_busy"]

SCENARIOS = ("alone", "neighbour", "two")
_NEIGHBOUR = "while True:\n    pass\n"


def busy_worker_main(args, make_step, model, input_shape):
    """The ``--busy-worker`` process: warm up, "ready", wait for "go", train, report.

    ``make_step(framework, model, "train", x, y)`` gives the training step of ``model``,
    whose samples have shape ``input_shape`` (C, H, W).
    """
    import numpy as np

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    rng = np.random.default_rng(12345)
    n = max(args.dataset_size, args.batch)
    x = rng.standard_normal((n,) + tuple(input_shape), dtype=np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    step = make_step(args.busy_worker, model, "train", x, y)
    batch = args.batch
    lo = 0
    warm_until = time.perf_counter() + args.warmup
    steps = 0
    while steps < 2 or time.perf_counter() < warm_until:
        step(lo, lo + batch)
        lo = (lo + batch) % (n - batch + 1)
        steps += 1
    proto.write("ready\n")
    if sys.stdin.readline().strip() != "go":
        return 1
    start = time.perf_counter()
    end = start + args.busy_seconds
    samples = 0
    while time.perf_counter() < end:
        step(lo, lo + batch)
        lo = (lo + batch) % (n - batch + 1)
        samples += batch
    seconds = time.perf_counter() - start
    threads = None
    if args.busy_worker == "fastconv":
        import fastconv
        threads = fastconv.get_num_threads()
    else:
        import torch
        threads = torch.get_num_threads()
    proto.write(json.dumps({"samples_per_s": samples / seconds, "seconds": seconds,
                            "threads": threads}) + "\n")
    return 0


def _start_worker(script, framework, batch, args, weights):
    cmd = [sys.executable, script, "--busy-worker", framework, "--batch", str(batch),
           "--busy-seconds", str(args.busy_seconds), "--warmup", str(max(args.warmup, 0.5)),
           "--dataset-size", str(args.busy_dataset_size)]
    if weights:
        cmd += ["--weights", weights]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _scenario(script, framework, batch, scenario, args, weights):
    """Samples/s of one scenario (summed over its training processes)."""
    neighbour = None
    if scenario == "neighbour":
        neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR])
    workers = [_start_worker(script, framework, batch, args, weights)
               for _ in range(2 if scenario == "two" else 1)]
    try:
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise RuntimeError(f"busy worker {framework} failed to start "
                                   f"(exit status {w.wait()})")
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        reports = [json.loads(w.stdout.readline()) for w in workers]
        for w in workers:
            w.wait(timeout=60)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return sum(r["samples_per_s"] for r in reports), reports[0]["threads"]


def run_busy(script, args, frameworks, weights, log=print):
    """Measure every scenario, alternating; {batch: {framework: {...}}}."""
    out = {}
    for batch in args.busy_batches:
        per = {fw: {s: [] for s in SCENARIOS} for fw in frameworks}
        threads = {}
        for r in range(args.repeats):
            for fw in (frameworks if r % 2 == 0 else list(reversed(frameworks))):
                order = SCENARIOS if r % 2 == 0 else tuple(reversed(SCENARIOS))
                for scenario in order:
                    sps, threads[fw] = _scenario(script, fw, batch, scenario, args, weights)
                    per[fw][scenario].append(sps)
                    log(f"busy b={batch} round {r + 1}: {fw} {scenario} {sps:.0f} samples/s")
        out[str(batch)] = {}
        for fw in frameworks:
            runs = per[fw]
            fractions = {s: statistics.median(a / b for a, b in zip(runs[s], runs["alone"]))
                         for s in ("neighbour", "two")}
            out[str(batch)][fw] = {
                "samples_per_s": runs, "threads_default": threads[fw],
                "median_samples_per_s": {s: statistics.median(v) for s, v in runs.items()},
                "neighbour_fraction": fractions["neighbour"], "two_fraction": fractions["two"]}
    return out


def format_busy(busy):
    """The busy-host table (markdown)."""
    lines = ["| batch | framework | threads (default) | alone | with a busy neighbour | "
             "two at once (total) |", "| --- | --- | --- | --- | --- | --- |"]
    for batch, per in busy.items():
        for fw, r in per.items():
            m = r["median_samples_per_s"]
            lines.append(f"| {batch} | {fw} | {r['threads_default']} | {m['alone']:.0f} | "
                         f"{m['neighbour']:.0f} ({r['neighbour_fraction']:.2f} of alone) | "
                         f"{m['two']:.0f} ({r['two_fraction']:.2f}) |")
    return "\n".join(lines)
