"""``compare_torch.py --baseline TREE``: this build against another one, cell by cell.

A change that makes the kernels safer or more general must not make them slower. This mode
answers that with the benchmark's own cells (training at batch 1, 32, 128; inference at 1 and
1000; both models) and its own worker processes:

* worker ``new`` imports fastconv from this repository, worker ``old`` from ``TREE`` (a
  source tree with its extensions built in place, e.g. ``git worktree add ../old <commit>``
  then ``python setup.py build_ext --inplace`` there). Both run this script's worker code,
  so the models and the timing loop are the same; only the package differs.
* Each build runs in ``AB_PROCESSES`` worker processes, started in mirrored order (new, old,
  old, new): an A/A run (this tree against a copy of itself) with one process per build
  showed the two processes of *identical* code apart by up to 3.6% on training cells and
  13% at inference batch 1,000, steadily over 21 rounds (bench/RESULTS.md), so a process's
  own luck (where its memory landed, its start order) must not decide a build's number. A
  build's run in a round is the mean of its processes' runs.
* Each cell alternates the processes, ``--repeats`` rounds in a seeded shuffled order, after a
  warm-up of all. The verdict is the **median paired ratio** new/old: round i's new run over
  round i's old run, which cancels the slow drift of a shared machine that a ratio of medians
  keeps. The ratio of medians is reported beside it.
* The fast path: a third worker runs this build with the layers' fast path switched off
  (``fastconv.nn._fastpath.set_enabled(False)``: every call validated through
  ``fastconv.functional``), alternated with ``new`` at batch 1 (training and inference), the
  case where per-call overhead matters most.

Writes ``bench/results/ab_builds.json`` (or ``--output``) atomically and prints a table.
"""
import os
import statistics
import subprocess

__all__ = ["main_ab", "paired_summary", "AB_TARGET"]

# Issue 10's bar: the new build keeps at least 97% of the old one's speed in every cell.
AB_TARGET = 0.97
# Steps per timed run at least: an inference run at batch 1,000 lasts two or three batches
# at the benchmark's 0.5 s, each faulting in hundreds of MB of fresh activations, and its
# ratio swung from 0.84 to 1.33 between runs of the same two builds (bench/RESULTS.md).
AB_MIN_STEPS = 8
# Worker processes per build (see the module docstring).
AB_PROCESSES = 2
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                              "ab_builds.json")


def paired_summary(a_runs, b_runs):
    """Median paired ratio a/b, ratio of medians, and rounds a won, of two run lists."""
    paired = [a / b for a, b in zip(a_runs, b_runs)]
    return {"median_paired_ratio": statistics.median(paired),
            "ratio_of_medians": statistics.median(a_runs) / statistics.median(b_runs),
            "paired": paired, "rounds_faster": sum(p > 1 for p in paired)}


def _commit(tree):
    try:
        out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def main_ab(args, Worker, alternate, log, machine, write_json):
    """Run the A/B; ``Worker``, ``alternate``, ... are compare_torch's own helpers."""
    tree = os.path.abspath(args.baseline)
    if not os.path.isdir(os.path.join(tree, "fastconv")):
        raise SystemExit(f"--baseline {args.baseline}: no fastconv package there; give a source "
                         f"tree with its extensions built in place "
                         f"(python setup.py build_ext --inplace)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args.min_steps = max(args.min_steps, AB_MIN_STEPS)
    seed = 20261129
    result = {"machine": machine, "threads": args.threads, "repeats": args.repeats,
              "min_time_s": args.min_time, "min_steps": args.min_steps, "new": _commit(repo), "old": _commit(tree),
              "old_tree": tree, "target": AB_TARGET, "cells": {}, "fastpath": {}}
    k = AB_PROCESSES
    result["processes_per_build"] = k
    # Started in mirrored order: new 0, old 0, ..., old k-1, new k-1 (then the validated
    # ones), so that no build has all the early (or all the late) processes.
    started = {}
    for i in range(k):
        for label, extra in ((("new", []), ("old", ["--fastconv-from", tree])) if i % 2 == 0
                             else (("old", ["--fastconv-from", tree]), ("new", []))):
            started[f"{label} {i}"] = Worker("fastconv", args.threads, args,
                                             label=f"{label} {i}", extra=extra)
    for i in range(k):
        started[f"validated {i}"] = Worker("fastconv", args.threads, args,
                                           label=f"validated {i}", extra=["--no-fastpath"])
    new = [started[f"new {i}"] for i in range(k)]
    old = [started[f"old {i}"] for i in range(k)]
    slow = [started[f"validated {i}"] for i in range(k)]

    def pair(a, b, name, mode, batch, keys):
        """Alternate the processes of builds a and b (lists of workers) on one cell; the
        paired summary of the per-round means, with each side's median and runs under
        ``keys`` (the names this cell's table uses for a and b)."""
        nonlocal seed
        runs = alternate(a + b, name, mode, batch, args.repeats, shuffle_seed=seed)
        seed += 1
        side = [[statistics.fmean(r) for r in zip(*(runs[w.label] for w in ws))]
                for ws in (a, b)]
        s = paired_summary(*side)
        for runs_of, ws, key in zip(side, (a, b), keys):
            s[key] = statistics.median(runs_of)
            s[key + "_runs"] = runs_of
            s[key + "_per_process"] = {w.label: runs[w.label] for w in ws}
        return s

    try:
        for name in args.models:
            for mode, batches in (("train", args.train_batches), ("infer", args.infer_batches)):
                for b in batches:
                    s = result["cells"][f"{name} {mode} {b}"] = pair(new, old, name, mode, b,
                                                                     ("new", "old"))
                    log(f"  {name} {mode} batch {b}: new {s['new']:.0f}/s, old {s['old']:.0f}/s, "
                        f"median paired ratio {s['median_paired_ratio']:.3f}")
            for mode in ("train", "infer"):
                s = result["fastpath"][f"{name} {mode} 1"] = pair(new, slow, name, mode, 1,
                                                                  ("fast", "validated"))
                log(f"  {name} {mode} batch 1: fast path {s['fast']:.0f}/s, validated "
                    f"{s['validated']:.0f}/s, median paired gain {s['median_paired_ratio']:.3f}")
    finally:
        for w in started.values():
            w.close()
    output = args.output if os.path.basename(args.output) != "compare_torch.json" else DEFAULT_OUTPUT
    write_json(output, result)
    print(format_ab(result))
    print(f"\n# wrote {os.path.relpath(output)}")
    return 0


def format_ab(result):
    lines = [f"# {result['machine']}",
             f"# new {result['new']} (this repository) vs old {result['old']} "
             f"({result['old_tree']}); {result['threads']} threads, float32, "
             f"{result['repeats']} alternating rounds (shuffled), "
             f"{result.get('processes_per_build', 1)} process(es) per build, "
             f">= {result['min_time_s']:g} s "
             f"and >= {result.get('min_steps', 2)} steps per run",
             f"  {'cell':<22}{'new/s':>9}{'old/s':>9}{'paired':>8}{'of med':>8}{'won':>5}  "
             f"target >= {result['target']:g}"]
    for cell, s in result["cells"].items():
        ok = "ok" if s["median_paired_ratio"] >= result["target"] else "BELOW"
        lines.append(f"  {cell:<22}{s['new']:>9.0f}{s['old']:>9.0f}"
                     f"{s['median_paired_ratio']:>8.3f}{s['ratio_of_medians']:>8.3f}"
                     f"{s['rounds_faster']:>3}/{len(s['paired'])}  {ok}")
    lines.append("  fast path vs validated path (this build), median paired gain:")
    for cell, s in result["fastpath"].items():
        lines.append(f"  {cell:<22}{s['fast']:>9.0f}{s['validated']:>9.0f}"
                     f"{s['median_paired_ratio']:>8.3f}{s['ratio_of_medians']:>8.3f}"
                     f"{s['rounds_faster']:>3}/{len(s['paired'])}")
    return "\n".join(lines)
