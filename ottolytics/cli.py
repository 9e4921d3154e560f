"""The ``ottolytics`` command line: a thin layer over library functions.

argparse (not click or typer) because the shim and the quick commands have
start-up budgets of a few milliseconds; heavier modules are imported inside
the commands that need them.
"""

import os
import sys

from . import __version__

EPILOG = """\
store: --db, else $OTTOLYTICS_DB, else $OTTO_HOME/ottolytics.db (OTTO_HOME defaults to ~/.otto)
"""


_EXEC_OPTIONS = ("--db", "--project", "--task", "--run")


class _Args:
    """What argparse would give for ``exec``; see :func:`_fast_exec`."""

    def __init__(self, **values):
        self.__dict__.update(values)


def _fast_exec(argv):
    """Parse ``[--db X] exec [--db X] [--project P] [--task T] [--run R] -- CMD ...``
    without importing argparse, which alone costs the shim several milliseconds.

    Returns None for anything else (help, a typo, a missing ``--``) so that
    argparse handles it with its usual messages.
    """
    values = dict.fromkeys(("db", "project", "task", "run"))
    i = 0
    seen_exec = False
    while i < len(argv):
        arg = argv[i]
        if arg == "exec" and not seen_exec:
            seen_exec = True
            i += 1
            continue
        if arg == "--" and seen_exec:
            return _Args(command=argv[i + 1:], **values)
        name, eq, inline = arg.partition("=")
        if name not in _EXEC_OPTIONS or (name != "--db" and not seen_exec):
            return None
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        else:
            return None
        values[name[2:]] = value
    return None


def _fail(message, code=1):
    print(f"ottolytics: error: {message}", file=sys.stderr)
    return code


def _parse_params(values):
    params = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r}: expected KEY=VALUE")
        params[key] = value
    return params


# -- commands ---------------------------------------------------------------

def cmd_exec(args):
    from .shim import exec_command
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return exec_command(command, db=args.db, project=args.project, task=args.task,
                        run=args.run)


def cmd_run_start(args):
    from .runs import start_run
    try:
        params = _parse_params(args.param)
    except ValueError as exc:
        return _fail(str(exc), 2)
    print(start_run(db=args.db, project=args.project, params=params))
    return 0


def cmd_run_end(args):
    from .runs import end_run
    status = end_run(args.run_id, db=args.db, status=args.status)
    if status is None:
        return _fail(f"run {args.run_id}: not found in the store; check the id "
                     "(ottolytics history) or the --db", 1)
    print(status)
    return 0


def _print_records(records, jsonl):
    """--json prints one document; --jsonl one object per line, for large outputs."""
    import json
    if jsonl:
        for r in records:
            print(json.dumps(r, default=str))
    else:
        print(json.dumps(records, indent=2, default=str))


def _frame_records(df):
    """A frame as JSON-ready records: ISO timestamps, nulls as None."""
    import json
    return json.loads(df.to_json(orient="records", date_format="iso", date_unit="us"))


def cmd_history(args):
    from .formatting import STATUS_SYMBOLS, duration, iso_utc, local_time, table
    from .listing import recent_runs
    from .migrations import StoreError
    if args.n < 0:
        return _fail(f"-n {args.n}: must be 0 or more", 2)
    try:
        runs = recent_runs(args.db, limit=args.n)
    except StoreError as exc:
        return _fail(str(exc))
    if args.json or args.jsonl:
        for r in runs:
            r["started_at"] = iso_utc(r["started_at"])
            r["finished_at"] = iso_utc(r["finished_at"])
        _print_records(runs, args.jsonl)
        return 0
    if not runs:
        print("no runs recorded yet")
        return 0
    rows = []
    for r in runs:
        counts = " ".join(f"{STATUS_SYMBOLS[s]}{r['tasks_' + s]}"
                          for s in ("success", "failed", "skipped", "interrupted", "running")
                          if r["tasks_" + s])
        rows.append([local_time(r["started_at"]),
                     f"{STATUS_SYMBOLS.get(r['status'], '?')} {r['status']}",
                     duration(r["duration_s"]), f"{r['tasks']} {counts}".strip(),
                     r["project"], r["run_id"]])
    print(table(["TIMESTAMP", "STATUS", "DURATION", "TASKS", "PROJECT", "RUN"], rows))
    return 0


def cmd_doctor(args):
    import json
    from .doctor import as_dicts, diagnose, healthy
    from .timeutil import parse_duration
    try:
        age = parse_duration(args.max_age) if args.max_age else None
    except ValueError as exc:
        return _fail(f"--max-age: {exc}", 2)
    checks = diagnose(args.db, max_run_age=age)
    if args.json:
        print(json.dumps({"ok": healthy(checks), "checks": as_dicts(checks)}, indent=2))
    else:
        for c in checks:
            print(f"{'ok ' if c.ok else 'BAD'}  {c.name:<10} {c.detail}")
    return 0 if healthy(checks) else 1


def cmd_sync(args):
    import json
    from .migrations import StoreError
    from .sync import summary_lines, sync
    try:
        report = sync(args.db, otto_home_dir=args.otto_home, source=args.source,
                      paths=args.paths)
    except (StoreError, OSError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(summary_lines(report, verbose=args.verbose)))
    return 0


def _open_history(args):
    from .history import open as open_history
    return open_history(args.db)


def cmd_export_parquet(args):
    import json
    from .migrations import StoreError
    try:
        summary = _open_history(args).to_parquet(args.directory)
    except (StoreError, OSError, ValueError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.directory}: wrote {summary['written']} partitions, "
              f"{summary['unchanged']} unchanged")
    return 0


def cmd_export_prometheus(args):
    from .migrations import StoreError
    from .prometheus import write_metrics
    from .timeutil import parse_duration
    try:
        window = parse_duration(args.window)
    except ValueError as exc:
        return _fail(f"--window: {exc}", 2)
    try:
        path = write_metrics(_open_history(args), args.file, window)
    except (StoreError, OSError) as exc:
        return _fail(str(exc))
    print(path)
    return 0


def cmd_report_weekly(args):
    from .migrations import StoreError
    from .report import to_csv_text, write_csv
    try:
        df = _open_history(args).weekly_report(args.week)
    except ValueError as exc:
        return _fail(str(exc), 2)
    except (StoreError, OSError) as exc:
        return _fail(str(exc))
    if args.json or args.jsonl:
        _print_records(_frame_records(df), args.jsonl)
        return 0
    if args.out:
        write_csv(df, args.out)
        print(args.out if len(df) else f"{args.out}: no runs that week; wrote the header only")
    else:
        sys.stdout.write(to_csv_text(df))
        if not len(df):
            print("ottolytics: no runs that week; the report has the header only",
                  file=sys.stderr)
    return 0


def cmd_synth(args):
    from .synth import synthesize
    if args.runs < 1 or args.tasks_per_run < 1 or args.days <= 0:
        return _fail("--runs, --tasks-per-run and --days must be positive", 2)
    end = None
    if args.end:
        import time
        from datetime import datetime, timezone
        try:
            end = time.time() if args.end == "now" else datetime.fromisoformat(
                args.end).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return _fail(f"--end {args.end!r}: use 'now' or a date such as 2026-11-21", 2)
    try:
        summary = synthesize(args.out, runs=args.runs, tasks_per_run=args.tasks_per_run,
                             seed=args.seed, days=args.days, end=end, force=args.force)
    except FileExistsError as exc:
        return _fail(str(exc), 2)
    print(f"wrote {summary['runs']} runs and {summary['tasks']} tasks to {args.out} "
          f"in {summary['seconds']:.1f}s")
    return 0


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(home=args.otto_home)


def cmd_bench(args):
    from .bench import main as bench_main
    return bench_main(quick=args.quick, only=args.only, out=args.out)


# -- parser -----------------------------------------------------------------

def build_parser():
    import argparse
    parser = argparse.ArgumentParser(
        prog="ottolytics", description="Run-history analytics for otto and other task runners.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ottolytics {__version__}")
    parser.add_argument("--db", help="the store file (default: see below)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="the store file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("exec", parents=[common], help="run a command and record it as a task",
                       description="Run CMD, stream its output, and record it as a task.")
    p.add_argument("--project", help="project name (default: the current directory's name)")
    p.add_argument("--task", help="task name (default: the command's name)")
    p.add_argument("--run", help="join this run (default: $OTTOLYTICS_RUN_ID, else a new run)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("run", help="start or end a run that several exec calls join")
    run_sub = p.add_subparsers(dest="run_command", metavar="start|end")
    rs = run_sub.add_parser("start", parents=[common], help="start a run and print its id")
    rs.add_argument("--project", help="project name (default: the current directory's name)")
    rs.add_argument("--param", action="append", metavar="K=V", help="a run parameter (repeatable)")
    rs.set_defaults(func=cmd_run_start)
    re_ = run_sub.add_parser("end", parents=[common], help="end a run")
    re_.add_argument("run_id")
    re_.add_argument("--status", choices=["success", "failed", "interrupted"],
                     help="override the status derived from the run's tasks")
    re_.set_defaults(func=cmd_run_end)

    p = sub.add_parser("history", parents=[common], help="recent runs, newest first")
    p.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("export", help="write the history as Parquet or Prometheus metrics")
    export_sub = p.add_subparsers(dest="export_command", metavar="parquet|prometheus")
    ep = export_sub.add_parser("parquet", parents=[common],
                               help="a Hive-partitioned Parquet dataset (incremental)")
    ep.add_argument("directory", metavar="DIR")
    ep.add_argument("--json", action="store_true", help="print the summary as JSON")
    ep.set_defaults(func=cmd_export_parquet)
    pp = export_sub.add_parser("prometheus", parents=[common],
                               help="a textfile for node_exporter's textfile collector")
    pp.add_argument("file", metavar="FILE")
    pp.add_argument("--window", default="7d",
                    help="window for durations and success ratios (default 7d)")
    pp.set_defaults(func=cmd_export_prometheus)

    p = sub.add_parser("report", help="reports: weekly")
    report_sub = p.add_subparsers(dest="report_command", metavar="weekly")
    rw = report_sub.add_parser("weekly", parents=[common],
                               help="per project and task for an ISO week, as CSV")
    rw.add_argument("--week", help="ISO week such as 2026-W47 (default: the last complete "
                    "week, local time)")
    rw.add_argument("--out", metavar="FILE", help="write the CSV here (atomically)")
    rw.add_argument("--json", action="store_true", help="print JSON instead of CSV")
    rw.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    rw.set_defaults(func=cmd_report_weekly)

    p = sub.add_parser("doctor", parents=[common], help="check and repair the store")
    p.add_argument("--max-age", help="close runs older than this with no live recorder "
                   "(default 24h; e.g. 7d)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("sync", parents=[common],
                       help="import history that otto, workflow-manager and oneshot wrote",
                       description="Import existing histories, incrementally: a second sync "
                       "adds nothing. Without PATH: otto under OTTO_HOME, plus "
                       "~/.workflow-manager/executions.db and ~/.oneshot when they exist.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="an OTTO_HOME, an executions.db, or a oneshot directory or session file")
    p.add_argument("--otto-home", help="OTTO_HOME to import (default $OTTO_HOME or ~/.otto)")
    p.add_argument("--source", choices=["otto", "workflow-manager", "oneshot"],
                   help="import only this source, or read PATHs as this source")
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped item")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("synth", help="write a synthetic history into a new store")
    p.add_argument("out", metavar="OUT.db")
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--tasks-per-run", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=float, default=90)
    p.add_argument("--end", help="when the history ends: 'now', or a UTC date (default "
                   "2026-11-21, fixed so a seed always gives the same store)")
    p.add_argument("--force", action="store_true", help="overwrite OUT.db if it exists")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="record a small demo run and show its history")
    p.add_argument("--otto-home", help="where to keep the demo store (default ./demo-home)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="measure speed and size against baselines")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check")
    p.add_argument("--only", action="append", help="run only these rows (repeatable)")
    p.add_argument("--out", help="also write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    fast = _fast_exec(argv)
    if fast is not None:
        return cmd_exec(fast)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        if args.command in ("run", "export", "report"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 2
    if not hasattr(args, "db"):
        args.db = None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # e.g. `ottolytics history | head`: stop quietly, as other CLI tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def entry():
    """The ``ottolytics`` console script.

    For ``exec`` it leaves through ``os._exit`` once everything is flushed:
    the store, the spool and the log files are closed explicitly by then and
    no atexit handlers are registered, so interpreter teardown (about 4 ms
    with our modules loaded, a tenth of the shim's budget) buys nothing.
    Other commands exit normally.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if _fast_exec(argv) is not None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code if isinstance(code, int) else 1)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
