"""How a training step scales past the cores this machine has: a model built from the code's
own units, checked against real runs at 1 and 2 threads.

Every parallel region of the kernels cuts its work into units fixed by the shapes (see the
design notes of ``fastconv/_kernels/_conv2d.pyx``) and reports each unit's wall time while a
trace is on (``fastconv/_kernels/_trace.pyx``). This script

1. times an untraced training step (plain SGD, the benchmark models of
   ``bench/compare_torch.py``) on 1 and on 2 threads, medians of ``--repeats`` steps;
2. traces ``--traces`` steps on one thread, where every unit runs alone, one after another,
   and takes each unit's median time;
3. predicts the step on T threads: the serial time (the untraced one-thread step minus the
   traced units: Python, validation and the kernels' serial code) plus, per region, the slowest thread's
   share of the units (contiguous runs of near-equal counts, as the kernels hand them out;
   a region cut by the thread count, such as a copy, divides evenly) and the cost of opening
   and joining a team of T threads;
4. prints predicted step time, speedup and efficiency for T = 1..64, the error of the
   prediction against the measured 1- and 2-thread steps, and the regions that cost more
   than 1% of the step with their unit counts.

Only the T = 1 and T = 2 team costs can be measured on a 2-core machine; beyond, the model
assumes libgomp's cost grows as log2(T) from the measured 2-thread cost (a tree of wake-ups
and a barrier), and prints the efficiency under a linear growth (T/2 times the 2-thread
cost) as a pessimistic bound: measured team costs of GNU OpenMP grow between the two with
the thread count. It does not model memory bandwidth: units that stream from memory (the
element-wise layers, pooling) scale worse than predicted on a machine whose bandwidth per
core is lower than this one's. The serial time is calibrated on the measured one-thread
step, so the T = 1 prediction matches it by construction unless the traced units alone
exceed the step (then the error shows how much the trace inflates them); T = 2 is the check
of the model. Run::

    python bench/scaling.py                       # every model at batch 1, 32, 128
    python bench/scaling.py --models maxpool --batches 32 --json bench/results/scaling.json
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from bench.compare_torch import MODEL_INPUTS, FastconvTrainer, build_fastconv_model  # noqa: E402
from fastconv._kernels import _trace  # noqa: E402

THREADS = (1, 2, 4, 8, 16, 32, 64)
UNITS_WANTED = 64
SHARE_THRESHOLD = 0.01
# Regions that keep fewer units than UNITS_WANTED on purpose, and why.
FEWER_UNITS = {
    "linear_forward": "a linear layer's GEMMs cut into more than 16 tiles of >= 32 rows or "
                      "columns ran 2-3x slower on 2 cores (the 1600 -> 128 layer at batch "
                      "32), for a layer of a few percent of a convnet's step",
    "linear_backward": "as linear_forward",
}


def _trainer(name, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + MODEL_INPUTS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return FastconvTrainer(build_fastconv_model(name)), x, y


def _step_times(trainer, x, y, threads, repeats):
    fastconv.set_num_threads(threads)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.step(x, y)
        times.append(time.perf_counter() - t0)
    return times


def instances(records):
    """Group a one-thread trace's records into region instances, in call order: a list of
    dicts with the region name, its unit count (0: cut by the thread count) and the units'
    times. On one thread a region's units finish in order, so unit 0 opens an instance."""
    out = []
    for region, unit, n_units, seconds in records:
        last = out[-1] if out else None
        if (last is None or last["region"] != region or n_units == 0 or unit == 0
                or last["n_units"] != n_units):
            last = {"region": region, "n_units": n_units, "times": []}
            out.append(last)
        last["times"].append(seconds)
    return out


def _traced_step(trainer, x, y):
    """One traced one-thread step: (its region instances, its wall time)."""
    fastconv.set_num_threads(1)
    _trace.start(1 << 21)
    t0 = time.perf_counter()
    trainer.step(x, y)
    wall = time.perf_counter() - t0
    records, dropped = _trace.stop()
    if dropped:
        raise RuntimeError(f"trace buffer too small: {dropped} records dropped")
    return instances(records), wall


def _merge(runs):
    """Median unit times over traced steps that ran the same regions."""
    shape = [(i["region"], i["n_units"], len(i["times"])) for i in runs[0]]
    for r in runs[1:]:
        if [(i["region"], i["n_units"], len(i["times"])) for i in r] != shape:
            raise RuntimeError("traced steps ran different regions; cannot take medians")
    merged = []
    for k, inst in enumerate(runs[0]):
        times = np.median(np.array([r[k]["times"] for r in runs]), axis=0)
        merged.append({"region": inst["region"], "n_units": inst["n_units"],
                       "times": times.tolist()})
    return merged


def trace_step(trainer, x, y, traces):
    """Trace ``traces`` one-thread steps; return (instances with median unit times, median
    traced step wall time)."""
    runs, walls = zip(*(_traced_step(trainer, x, y) for _ in range(traces)))
    return _merge(list(runs)), float(np.median(walls))


def region_time(inst, threads):
    """Wall time of one region instance on ``threads`` threads, team cost aside: the
    slowest contiguous run of units (libgomp's static schedule: the first U mod T threads
    take one more), or an even share where the region is cut by the thread count."""
    times = inst["times"]
    if inst["n_units"] == 0:
        return sum(times) / threads
    units = len(times)
    base, extra = divmod(units, threads)
    worst, start = 0.0, 0
    for t in range(min(threads, units)):
        n = base + (1 if t < extra else 0)
        worst = max(worst, sum(times[start:start + n]))
        start += n
    return worst


def team_cost(threads, cost2, growth="log"):
    """Cost of one parallel region's fork and join: measured at 2 threads, assumed to grow
    as log2(T) beyond (a tree of wake-ups and a tree barrier), or, with growth="linear", as
    T/2 (one thread waking and joining each of the others: the pessimistic bound)."""
    if threads == 1:
        return 0.0
    if growth == "linear":
        return cost2 * threads / 2
    return cost2 * math.log2(threads)


def predict(insts, serial, threads, cost2, growth="log"):
    return serial + sum(region_time(i, threads) + team_cost(threads, cost2, growth)
                        for i in insts)


def region_table(insts, step):
    """Regions by name: unit counts seen, share of the one-thread step."""
    rows = {}
    for inst in insts:
        r = rows.setdefault(inst["region"], {"seconds": 0.0, "units": set(), "calls": 0})
        r["seconds"] += sum(inst["times"])
        r["units"].add(inst["n_units"])
        r["calls"] += 1
    return {k: {"share": v["seconds"] / step, "units": sorted(v["units"]), "calls": v["calls"]}
            for k, v in sorted(rows.items(), key=lambda kv: -kv[1]["seconds"])}


def few_unit_regions(insts, step, wanted=UNITS_WANTED, threshold=SHARE_THRESHOLD,
                     exempt=FEWER_UNITS):
    """Region instances that cost more than ``threshold`` of the step and have fewer than
    ``wanted`` units (a region cut by the thread count has as many as there are threads),
    leaving out the regions ``exempt`` names."""
    return [(i["region"], i["n_units"], sum(i["times"]) / step) for i in insts
            if 0 < i["n_units"] < wanted and sum(i["times"]) / step > threshold
            and i["region"] not in exempt]


def model_case(name, batch, repeats, traces, cost2):
    """Measure and model one (model, batch) case. Rounds alternate an untraced one-thread
    step, a traced one, and an untraced two-thread step, so that all three see the same
    moments of a shared machine; medians over the rounds."""
    trainer, x, y = _trainer(name, batch)
    _step_times(trainer, x, y, 1, 2)
    _step_times(trainer, x, y, 2, 2)
    one, two, runs, walls = [], [], [], []
    for r in range(max(repeats, traces)):
        one += _step_times(trainer, x, y, 1, 1)
        if r < traces:
            insts, wall = _traced_step(trainer, x, y)
            runs.append(insts)
            walls.append(wall)
        two += _step_times(trainer, x, y, 2, 1)
    measured = {1: float(np.median(one)), 2: float(np.median(two))}
    insts, wall = _merge(runs), float(np.median(walls))
    units_total = sum(sum(i["times"]) for i in insts)
    # The untraced step calibrates the serial time: a trace's own clock reads between units
    # (thousands in a pooling layer) would count as serial work that the step does not do.
    serial = max(0.0, measured[1] - units_total)
    pred = {t: predict(insts, serial, t, cost2) for t in THREADS}
    return {
        "model": name, "batch": batch,
        "measured_s": {str(t): v for t, v in measured.items()},
        "traced_step_s": wall, "serial_s": serial,
        "predicted_s": {str(t): v for t, v in pred.items()},
        "speedup": {str(t): pred[1] / pred[t] for t in THREADS},
        "efficiency": {str(t): pred[1] / pred[t] / t for t in THREADS},
        "efficiency_linear_team_cost": {
            str(t): pred[1] / predict(insts, serial, t, cost2, "linear") / t
            for t in THREADS},
        "error": {str(t): pred[t] / measured[t] - 1 for t in (1, 2)},
        "parallel_only_efficiency": {
            str(t): (units_total / (sum(region_time(i, t) + team_cost(t, cost2)
                                        for i in insts))) / t for t in THREADS},
        "regions": region_table(insts, pred[1]),
        "few_units": few_unit_regions(insts, pred[1]),
    }


def format_case(r):
    lines = [f"{r['model']}, batch {r['batch']}: measured {1e3 * r['measured_s']['1']:.2f} ms "
             f"(1 thread), {1e3 * r['measured_s']['2']:.2f} ms (2); predicted "
             f"{1e3 * r['predicted_s']['1']:.2f} / {1e3 * r['predicted_s']['2']:.2f} ms: error "
             f"{100 * r['error']['1']:+.1f}% / {100 * r['error']['2']:+.1f}%; serial "
             f"{1e3 * r['serial_s']:.2f} ms",
             "  threads   " + "".join(f"{t:>8d}" for t in THREADS),
             "  speedup   " + "".join(f"{r['speedup'][str(t)]:8.2f}" for t in THREADS),
             "  efficiency" + "".join(f"{r['efficiency'][str(t)]:8.2f}" for t in THREADS),
             "  (T/2 team)" + "".join(f"{r['efficiency_linear_team_cost'][str(t)]:8.2f}"
                                      for t in THREADS),
             "  (no serial)" + "".join(f"{r['parallel_only_efficiency'][str(t)]:8.2f}"
                                       for t in THREADS)]
    for region, row in r["regions"].items():
        if row["share"] >= SHARE_THRESHOLD:
            units = ", ".join("by threads" if u == 0 else str(u) for u in row["units"])
            lines.append(f"    {region:28s} {100 * row['share']:5.1f}%  {row['calls']} calls, "
                         f"units {units}")
    for region, units, share in r["few_units"]:
        lines.append(f"  ! {region}: {units} units at {100 * share:.1f}% of the step")
    for region in sorted(set(r["regions"]) & set(FEWER_UNITS)):
        if r["regions"][region]["share"] >= SHARE_THRESHOLD:
            lines.append(f"  ({region} keeps fewer units: {FEWER_UNITS[region]})")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=sorted(MODEL_INPUTS),
                   default=["maxpool", "convnet", "cifar", "cifar-bn"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32, 128])
    p.add_argument("--repeats", type=int, default=15, help="untimed steps per median")
    p.add_argument("--traces", type=int, default=5, help="traced steps per median")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if min(args.batches) < 1 or args.repeats < 1 or args.traces < 1:
        p.error("--batches, --repeats and --traces must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    cost2 = float(np.median([_trace.fork_join_seconds(2, 2000) for _ in range(5)]))
    print(f"team cost: {1e6 * cost2:.2f} us at 2 threads (assumed x log2(T) beyond)")
    results = []
    for name in args.models:
        for batch in args.batches:
            r = model_case(name, batch, args.repeats, args.traces, cost2)
            results.append(r)
            print(format_case(r), flush=True)
    if args.json:
        from fastconv.serialization import atomic_write_text
        atomic_write_text(args.json, json.dumps(
            {"command": "python bench/scaling.py " + " ".join(argv or sys.argv[1:]),
             "team_cost_2_s": cost2, "cases": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
