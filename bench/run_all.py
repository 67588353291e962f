"""Run the homework's whole experiment matrix, resumably, and write its report and figures.

Usage (from the repository root)::

    python bench/run_all.py --preset smoke            # every family, tiny data (CI, < 3 min)
    python bench/run_all.py --preset quick --jobs 2   # the 6,000-image set (tens of minutes)
    python bench/run_all.py --preset full --jobs 2    # the homework's scale (hours; asks first)
    python bench/run_all.py --list                     # the runs and their status
    python bench/run_all.py --only batch momentum      # some families
    python bench/run_all.py --report-only              # rebuild report.md and figures
    python bench/run_all.py --dask tcp://host:8786     # on a Dask cluster

Results go to ``bench/results/<preset>/`` (``--out``): ``runs/<key>/`` per run (see
:mod:`fastconv.experiments.store`), ``report.md`` and ``figures/*.png``. Before the first run
the command prints how many runs it will do and how long that should take; above an hour it
asks to confirm on a terminal (``--yes`` skips the question; without a terminal it never
asks). Rerunning is always safe: finished runs are skipped, interrupted ones resume from their
last epoch; Ctrl-C stops cleanly and prints the command that resumes.
"""
import argparse
import os
import sys
import time

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for `bench`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._runner import (DEFAULT_TRAIN_FN, DaskExecutor, Interrupted,  # noqa: E402
                           LocalExecutor, Progress, usable_cores)
from bench.experiments import (FAMILIES, PRESETS, build_matrix, keep_epochs,  # noqa: E402
                               unique_runs)
from fastconv.experiments import FINISHED, RunDir  # noqa: E402

__all__ = ["main", "parse_args", "list_runs", "runs_to_execute"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Above this estimate a terminal user is asked before anything runs.
CONFIRM_ABOVE_SECONDS = 3600


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python bench/run_all.py",
        description="Reproduce the homework's experiments (resumable) and write report.md "
                    "and figures.")
    parser.add_argument("--preset", choices=list(PRESETS), default="full",
                        help="smoke: tiny data, 1-2 epochs (CI); quick: the 6,000-image set, "
                             "few epochs; full: full MNIST, each family as long as its "
                             "claim needs (at most 8 hours on 2 cores). Default: full")
    parser.add_argument("--budget", metavar="HOURS", type=float,
                        help="start only runs estimated to finish within this many hours "
                             "from now (the rest wait for the next invocation): a sitting "
                             "that ends with whole runs finished")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do not ask before a run estimated to take over an hour")
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
    parser.add_argument("--dask-shared-storage", action="store_true",
                        help="with --dask: the workers see --out at the same path (shared "
                             "disk); they train in it, and interrupted runs resume anywhere")
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


def _resume_command(argv):
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python bench/run_all.py"] + [a for a in args if a not in ("-y",)])


def _confirm(estimate, args):
    """Ask a terminal user before a long matrix; True to go on."""
    from bench._estimate import format_duration

    if estimate <= CONFIRM_ABOVE_SECONDS or args.yes or not sys.stdin.isatty():
        return True
    try:
        answer = input(f"This will take about {format_duration(estimate)}. Start? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _log_sitting(out, args, estimator, todo, jobs, threads, start, results,
                 interrupted=False):
    """Append this invocation to ``<out>/sittings.jsonl``: what it estimated, what it took.

    ``estimate_finished_s`` is the start-of-sitting estimate for exactly the runs that
    finished in it, so that it compares with ``wall_s`` whatever the sitting left undone; a
    run that failed is not among them (it took seconds where its estimate is its full cost).
    """
    import json

    from fastconv.experiments.worker import _code_version

    finished = [r for r in todo if r.key in results
                and not (results[r.key] or {}).get("error")]
    entry = {"preset": args.preset, "started": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                              time.localtime(start)),
             "wall_s": round(time.time() - start, 1), "jobs": jobs, "threads": threads,
             "runs_to_do": len(todo), "runs_finished": len(finished),
             "runs_failed": sum(1 for r in todo if (results.get(r.key) or {}).get("error")),
             "interrupted": interrupted, **_code_version()}
    if estimator is not None:
        entry["estimate_all_s"] = round(estimator.wall_seconds(todo, jobs, estimator.done), 1)
        entry["estimate_finished_s"] = round(
            estimator.wall_seconds(finished, jobs, estimator.done), 1)
        entry["cost_source"] = estimator.source
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sittings.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _execute(args, runs, todo, out):
    """Estimate, confirm, run; the results, or None when the user declined."""
    from bench._estimate import Estimator, format_duration

    if args.dask:
        executor = DaskExecutor(args.dask, threads=args.threads or 1, train_fn=args.train_fn,
                                shared_storage=args.dask_shared_storage)
        jobs, threads = executor.jobs, executor.threads
        where = f"{jobs} Dask worker thread(s) x {threads} thread(s)"
    else:
        executor = LocalExecutor(args.jobs, train_fn=args.train_fn)
        if args.threads:
            executor.threads = args.threads
        jobs, threads = executor.jobs, executor.threads
        where = f"{jobs} job(s) x {threads} thread(s) on {usable_cores()} cores"
    estimator = None
    if args.train_fn == DEFAULT_TRAIN_FN:
        estimator = Estimator(runs, out, threads=threads)
        estimator.done = {r.key: len(RunDir(out, r.key).metrics) for r in todo}
        todo = estimator.longest_first(todo, estimator.done)
        estimate = estimator.wall_seconds(todo, jobs, estimator.done)
        print(f"{where}; estimated wall time: about {format_duration(estimate)} (per-sample "
              f"costs {estimator.source})", flush=True)
        if not _confirm(estimate, args):
            print("Nothing was run. Add --yes to start without asking, or --preset quick "
                  "for a shorter matrix.")
            return None
    else:
        print(where, flush=True)
    if estimator is not None and not args.dask and (
            args.budget is None
            or min(estimator.run_seconds(r.config) for r in todo) <= 3600 * args.budget):
        _check_data(todo)     # only when some run may start
    progress = Progress(todo, out, estimator, jobs, enabled=not args.no_progress)
    start = time.time()
    options = {"keep": keep_epochs(runs)}
    if args.budget is not None:
        if estimator is None or args.dask:
            raise SystemExit("--budget needs the default trainer and local jobs")
        deadline = start + 3600 * args.budget

        def fits(run):
            first = len(RunDir(out, run.key).metrics) + 1
            if run.branch is not None and first == 1:
                first = run.branch[1] + 1
            return time.time() + progress.speed() * estimator.run_seconds(run.config, first) \
                <= deadline
        options["may_start"] = fits
    try:
        results = executor.run(todo, out, progress, **options)
    except Interrupted as stop:
        _log_sitting(out, args, estimator, todo, jobs, threads, start, stop.results,
                     interrupted=True)
        raise
    finally:
        progress.close()
    _log_sitting(out, args, estimator, todo, jobs, threads, start, results)
    bad = {k: r for k, r in results.items() if r.get("status") != "ok"}
    print(f"ran {len(results)} runs in {time.time() - start:.0f} s; {len(bad)} not ok",
          flush=True)
    for key, record in bad.items():
        print(f"  {key}: {record.get('status')}: {record.get('error')}")
    return results


def _check_data(todo):
    """Stop before the first run, in one line, when the runs' data set cannot be loaded:
    otherwise every run would fail alone and be recorded as failed."""
    if not any(r.config["data"]["source"] == "mnist" for r in todo):
        return
    from fastconv.datasets import DataNotFoundError, load_mnist
    try:
        load_mnist(size=(1, 1))
    except DataNotFoundError as e:
        raise SystemExit(f"run_all.py: {str(e).splitlines()[0]} Set FASTCONV_DATA to the folder "
                         f"holding the four MNIST .gz files (or put them in "
                         f"~/.cache/fastconv/mnist), or run --preset smoke, which needs none. "
                         f"Nothing was run.") from None


def main(argv=None):
    args = parse_args(argv)
    runs = build_matrix(args.preset, args.only)
    out = args.out
    if args.list:
        list_runs(runs, out)
        return 0
    try:
        if not args.report_only:
            todo = runs_to_execute(runs, out, args.retry_failed)
            n_unique = len(unique_runs(runs))
            print(f"{args.preset}: {n_unique} distinct runs, {n_unique - len(todo)} already "
                  f"finished, {len(todo)} to run -> {out}", flush=True)
            if todo and _execute(args, runs, todo, out) is None:
                return 1
        if not args.no_report:
            from bench._report import write_report
            path = write_report(build_matrix(args.preset, args.only), out, args.preset)
            print(f"report: {path}")
    except (Interrupted, KeyboardInterrupt):
        finished = sum(1 for r in unique_runs(runs) if RunDir(out, r.key).final is not None)
        print(f"\ninterrupted: {finished} of {len(unique_runs(runs))} runs finished; nothing "
              f"is lost (every finished epoch is kept). Resume with: "
              f"{_resume_command(argv)}", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
