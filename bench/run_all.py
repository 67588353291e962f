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
last epoch; Ctrl-C stops cleanly and prints the command that resumes. A damaged run file
(final.json, metrics.csv, config.json) is listed as damaged by ``--list`` and repaired or
trained again by the next run; a full disk or an unwritable folder stops the sitting with one
line and exit status 1, recording no run as failed for it, and the same command resumes once
it is fixed.
"""
import argparse
import os
import sys
import time

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for `bench`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._runner import (DEFAULT_TRAIN_FN, DaskExecutor, Interrupted,  # noqa: E402
                           LocalExecutor, Progress, StoreUnwritable, describe_os_error,
                           usable_cores)
from bench.experiments import (FAMILIES, PRESETS, build_matrix, keep_epochs,  # noqa: E402
                               unique_runs)
from fastconv._threads import max_threads  # noqa: E402
from fastconv.cli import _number, _Parser  # noqa: E402
from fastconv.experiments import FINISHED, RunDir  # noqa: E402
from fastconv.experiments.store import environmental_error  # noqa: E402

__all__ = ["main", "parse_args", "list_runs", "runs_to_execute"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Above this estimate a terminal user is asked before anything runs.
CONFIRM_ABOVE_SECONDS = 3600


def _count(what):
    """argparse type of --jobs and --threads: an int in [1, max_threads()]."""
    def parse(text):
        n = _number(int, 1)(text)
        if n > max_threads():
            raise argparse.ArgumentTypeError(f"must be <= {max_threads()} (64 x the usable "
                                             f"cores); got {text!r}")
        return n
    parse.__name__ = what
    return parse


def parse_args(argv=None):
    """The parsed command line (one-line errors, exit status 2, for bad options)."""
    parser = _Parser(
        prog="python bench/run_all.py",
        description="Reproduce the homework's experiments (resumable) and write report.md "
                    "and figures.")
    parser.add_argument("--preset", choices=list(PRESETS), default="full",
                        help="smoke: tiny data, 1-2 epochs (CI); quick: the 6,000-image set, "
                             "few epochs; full: full MNIST, each family as long as its "
                             "claim needs (at most 8 hours on 2 cores). Default: full")
    parser.add_argument("--budget", metavar="HOURS", type=_number(float, 0),
                        help="start only runs estimated to finish within this many hours "
                             "from now (the rest wait for the next invocation): a sitting "
                             "that ends with whole runs finished; 0 starts none (the "
                             "estimate only)")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do not ask before a run estimated to take over an hour")
    parser.add_argument("--only", nargs="+", metavar="FAMILY", choices=list(FAMILIES),
                        help=f"run only these families: {', '.join(FAMILIES)}")
    parser.add_argument("--out", help="output folder (default bench/results/<preset>)")
    parser.add_argument("--jobs", "-j", type=_count("int"), default=1,
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
    parser.add_argument("--threads", type=_count("int"),
                        help="threads per run, >= 1 (default: omit it for cores // jobs; "
                             "with --dask: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--train-fn", default=DEFAULT_TRAIN_FN, metavar="MODULE:FUNCTION",
                        help="train function (for tests and custom trainers; default "
                             "%(default)s)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = os.path.join(_ROOT, "bench", "results", args.preset)
    return args


def runs_to_execute(runs, out, retry_failed=False):
    """The distinct runs of ``runs`` that have no final.json (or a failed one, if retrying)
    or a damaged file (repaired or trained again when they run)."""
    todo = []
    for run in unique_runs(runs):
        final = RunDir(out, run.key).final
        if final is None or RunDir(out, run.key).damaged():
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
                        ("ok", "failed", "diverged", "running", "partial", "pending",
                         "damaged")
                        if statuses.count(s))
    print(f"{len(unique_runs(runs))} distinct runs ({len(runs)} declared): {summary}", file=file)
    for run in unique_runs(runs):
        for name, problem in RunDir(out, run.key).damaged():
            print(f"damaged: {run.family}: {run.label}: "
                  f"{os.path.join(RunDir(out, run.key).path, name)} {problem}. Fix: rerun "
                  f"without --list; it keeps the file as {name}.damaged and restores the run "
                  f"or trains it again", file=file)
    from bench._report import read_sittings
    skipped = read_sittings(out)[1]
    if skipped:
        print(f"damaged: {os.path.join(out, 'sittings.jsonl')}: {skipped} line(s) are not "
              f"sitting records; the report skips them (delete them to silence this)",
              file=file)


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
    path = os.path.join(out, "sittings.jsonl")
    with open(path, "ab+") as f:
        # A line cut short by a full disk must not swallow this one.
        lead = b""
        if f.seek(0, os.SEEK_END):
            f.seek(-1, os.SEEK_END)
            lead = b"" if f.read(1) == b"\n" else b"\n"
        f.write(lead + (json.dumps(entry) + "\n").encode("utf-8"))


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
    except (Interrupted, StoreUnwritable) as stop:
        try:
            _log_sitting(out, args, estimator, todo, jobs, threads, start, stop.results,
                         interrupted=True)
        except OSError as exc:
            if environmental_error(exc) is None:
                raise
            # The disk that stopped the runs may not take the log either; the runs are safe.
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


def _check_out(out, write):
    """One line (SystemExit) when ``--out`` cannot hold the matrix: a file, not a folder, or
    (``write``) a folder that cannot be created or written."""
    from fastconv.train import SaveFolderError, check_save_folder

    try:
        os.stat(out)
    except FileNotFoundError:
        pass                    # nothing stored yet
    except OSError as exc:      # a parent is a file, or cannot be searched
        raise SystemExit(f"run_all.py: --out {out}: cannot be used ({exc.strerror}); pass "
                         f"another --out folder. Nothing was run.") from None
    if os.path.exists(out) and not os.path.isdir(out):
        problem = "exists and is a file, not a folder"
    elif not write:
        return
    else:
        try:
            check_save_folder(out)
            return
        except SaveFolderError as exc:
            problem = exc.problem
    raise SystemExit(f"run_all.py: --out {out}: {problem}; pass another --out folder. "
                     f"Nothing was run.")


def main(argv=None):
    """Run ``bench/run_all.py`` with ``argv`` (default ``sys.argv[1:]``); the exit status.

    0 when done, 1 when the output folder cannot be written (a line says why and how to
    resume), 130 when interrupted; bad options exit 2 through SystemExit.
    """
    args = parse_args(argv)
    runs = build_matrix(args.preset, args.only)
    out = args.out
    _check_out(out, write=not args.list)
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
    except (StoreUnwritable, OSError) as exc:
        if isinstance(exc, StoreUnwritable):
            message = exc.message
        elif environmental_error(exc) is not None:
            message = describe_os_error(environmental_error(exc))
        else:
            raise
        finished = sum(1 for r in unique_runs(runs) if RunDir(out, r.key).final is not None)
        print(f"run_all.py: stopped: {message}. {finished} of {len(unique_runs(runs))} runs "
              f"finished and none is recorded as failed for this; every finished epoch is "
              f"kept. Free space (or fix the folder's permissions) and resume with: "
              f"{_resume_command(argv)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
