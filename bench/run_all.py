"""Run the homework's whole experiment matrix, resumably, and write its report and figures.

Usage (from the repository root)::

    python bench/run_all.py --preset smoke            # every family, tiny data (CI, < 3 min)
    python bench/run_all.py --preset quick --jobs 2   # the small data set (< 45 min, 2 cores)
    python bench/run_all.py                            # --preset full: the homework's scale
    python bench/run_all.py --list                     # the runs and their status
    python bench/run_all.py --only batch momentum      # some families
    python bench/run_all.py --report-only              # rebuild report.md and figures
    python bench/run_all.py --dask tcp://host:8786     # on a Dask cluster

Results go to ``bench/results/<preset>/`` (``--out``): ``runs/<key>/`` per run (see
:mod:`bench._store`), ``report.md`` and ``figures/*.png``. Rerunning is always safe: finished
runs are skipped, interrupted ones resume from their last epoch.
"""
import argparse
import os
import sys
import time

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for `bench` and `fastconv`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._runner import (DEFAULT_TRAIN_FN, DaskExecutor, LocalExecutor, Progress,  # noqa: E402
                           usable_cores)
from bench._store import FINISHED, RunDir  # noqa: E402
from bench.experiments import FAMILIES, PRESETS, build_matrix, unique_runs  # noqa: E402

__all__ = ["main", "parse_args", "list_runs", "runs_to_execute"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python bench/run_all.py",
        description="Reproduce the homework's experiments (resumable) and write report.md "
                    "and figures.")
    parser.add_argument("--preset", choices=list(PRESETS), default="full",
                        help="smoke: tiny data, 1 epoch (CI); quick: the 6,000-image set, "
                             "few epochs (< 45 min on 2 cores); full: the homework's scale "
                             "(hours). Default: full")
    parser.add_argument("--only", nargs="+", metavar="FAMILY", choices=list(FAMILIES),
                        help=f"run only these families: {', '.join(FAMILIES)}")
    parser.add_argument("--out", help="output folder (default bench/results/<preset>)")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="runs at once, each with cores // jobs threads (default 1)")
    parser.add_argument("--list", action="store_true",
                        help="print the runs and their status; run nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild report.md and figures from stored results; run nothing")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write report.md and figures after running")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the runs recorded as failed or diverged")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="submit runs to this dask.distributed scheduler instead")
    parser.add_argument("--threads", type=int,
                        help="threads per run (default cores // jobs; with --dask: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--train-fn", default=DEFAULT_TRAIN_FN, metavar="MODULE:FUNCTION",
                        help="train function (for tests and custom trainers; default "
                             "%(default)s)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1; got {args.jobs}")
    if args.out is None:
        args.out = os.path.join(_ROOT, "bench", "results", args.preset)
    return args


def runs_to_execute(runs, out, retry_failed=False):
    """The distinct runs of ``runs`` that have no final.json (or a failed one, if retrying)."""
    todo = []
    for run in unique_runs(runs):
        final = RunDir(out, run.key).final
        if final is None:
            todo.append(run)
        elif retry_failed and final.get("status") in ("failed", "diverged"):
            os.replace(RunDir(out, run.key).file("final.json"),
                       RunDir(out, run.key).file("final.previous.json"))
            todo.append(run)
        elif final.get("status") not in FINISHED:
            todo.append(run)
    return todo


def _pct(x):
    return "" if x is None else f"{100 * x:.2f}%"


def list_runs(runs, out, file=None):
    """Print one line per declared run: family, label, key, status, epochs, test accuracy."""
    file = sys.stdout if file is None else file
    rows = [("family", "run", "key", "status", "epochs", "test acc")]
    for run in runs:
        stored = RunDir(out, run.key)
        final = stored.final
        metrics = final.get("history", []) if final else stored.metrics
        done = metrics[-1]["epoch"] if metrics else 0
        acc = metrics[-1].get("test_accuracy") if metrics else None
        rows.append((run.family, run.label, run.key, stored.status(),
                     f"{int(done)}/{run.config['epochs']}", _pct(acc)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
    statuses = [RunDir(out, r.key).status() for r in unique_runs(runs)]
    summary = ", ".join(f"{statuses.count(s)} {s}" for s in
                        ("ok", "failed", "diverged", "running", "partial", "pending")
                        if statuses.count(s))
    print(f"{len(unique_runs(runs))} distinct runs ({len(runs)} declared): {summary}", file=file)


def main(argv=None):
    args = parse_args(argv)
    runs = build_matrix(args.preset, args.only)
    out = args.out
    if args.list:
        list_runs(runs, out)
        return 0
    if not args.report_only:
        todo = runs_to_execute(runs, out, args.retry_failed)
        n_unique = len(unique_runs(runs))
        print(f"{args.preset}: {n_unique} distinct runs, {n_unique - len(todo)} already "
              f"finished, {len(todo)} to run -> {out}", flush=True)
        if todo:
            if args.dask:
                executor = DaskExecutor(args.dask, threads=args.threads or 1,
                                        train_fn=args.train_fn)
            else:
                executor = LocalExecutor(args.jobs, train_fn=args.train_fn)
                if args.threads:
                    executor.threads = args.threads
                print(f"{executor.jobs} job(s) x {executor.threads} thread(s) on "
                      f"{usable_cores()} cores", flush=True)
            progress = Progress(len(todo), enabled=not args.no_progress)
            start = time.time()
            try:
                results = executor.run(todo, out, progress)
            finally:
                progress.close()
            bad = {k: r for k, r in results.items() if r.get("status") != "ok"}
            print(f"ran {len(results)} runs in {time.time() - start:.0f} s; "
                  f"{len(bad)} not ok", flush=True)
            for key, record in bad.items():
                print(f"  {key}: {record.get('status')}: {record.get('error')}")
    if not args.no_report:
        from bench._report import write_report
        path = write_report(build_matrix(args.preset, args.only), out, args.preset)
        print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
