"""The questions the library answers, from the terminal: ``flaky``, ``failures``
and ``regressions``. Each command is one call of the History API
(``h.flaky()``, ``h.failures()`` / ``h.failure_groups()``, ``h.regressions()``)
on a history narrowed by the same filters, printed as a table or, with
``--json`` / ``--jsonl``, as the frame's records.
"""

import argparse

from ottolytics.cli.render import frame_records, print_records, print_table
from ottolytics.cli.common import _bad_count, _fail, _open_history, _unknown_project


def add_parsers(sub, common, json_flags):
    """Register the three commands on the CLI's subparsers."""
    def filters(p, task=True):
        p.add_argument("--project", action="append", metavar="NAME",
                       help="only this project (repeatable)")
        if task:
            p.add_argument("--task", action="append", metavar="NAME",
                           help="only this task (repeatable)")
        p.add_argument("--since", metavar="WHEN",
                       help="only runs started since: a duration ago with a unit (7d, 12h), "
                            "unix seconds, or a date/time (2026-11-01, 2026-11-01T08:00Z)")
        p.add_argument("-n", type=int, default=20, help="how many rows (default 20; 0: all)")
        json_flags(p)

    p = sub.add_parser("flaky", parents=[common], help="tasks that pass and fail on the same "
                       "code, most flaky first (h.flaky)")
    p.add_argument("--window", type=int, default=20,
                   help="judge each task by its last N runs (default 20)")
    filters(p)
    p.set_defaults(func=cmd_flaky)

    p = sub.add_parser("failures", parents=[common], help="failed tasks newest first, or with "
                       "--groups the distinct failures (h.failures, h.failure_groups)")
    p.add_argument("--groups", action="store_true",
                   help="one row per distinct failure (same normalized stderr), most frequent "
                        "first")
    filters(p)
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser("regressions", parents=[common], help="tasks whose duration changed "
                       "lastingly, strongest first (h.regressions)")
    p.add_argument("task_name", nargs="?", metavar="TASK", help="only this task")
    p.add_argument("--window", type=int, default=12,
                   help="runs compared on each side of a change point (default 12)")
    p.add_argument("--min-ratio", type=float, default=1.25,
                   help="smallest change of the median that counts (default 1.25)")
    filters(p, task=False)
    p.set_defaults(func=cmd_regressions)


def _filters(args):
    """The filters of --project, --task and --since; ValueError on a bad --since."""
    from ottolytics.core.timeutil import parse_since
    since = parse_since(args.since) if args.since else None
    return {"project": args.project, "since": since, "task": getattr(args, "task", None)}


def _run(args, call, render):
    """Open, ask, print: every error is one line (exit 1; 2 for a bad argument),
    a bad --since's here, the store's in main."""
    if _bad_count("-n", args.n):
        return 2
    try:
        filters = _filters(args)
        for name in args.project or ():
            unknown = _unknown_project(argparse.Namespace(db=args.db, project=name))
            if unknown is not None:
                return unknown
    except ValueError as exc:
        return _fail(f"--since: {exc}", 2)
    try:
        with _open_history(args) as h:
            df = call(h.with_filters(**filters))
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.n:
        df = df.head(args.n)
    if args.json or args.jsonl:
        print_records(frame_records(df), args.jsonl)
        return 0
    if df.empty:
        print(render(None))
        return 0
    render(df)
    return 0


def cmd_flaky(args):

    def render(df):
        if df is None:
            return "no flaky tasks: none both passed and failed in its window"
        print_table(["PROJECT", "TASK", "SCORE", "RUNS", "FAILED", "FLIPS", "RETRY PASSES",
                     "MIXED HASHES", "SINCE"],
                    [[r.project, r.task, f"{r.score:.2f}", r.runs, r.failed_runs, r.flips,
                      r.retry_passes, r.mixed_hashes, _when(r.since)]
                     for r in df.itertuples()],
                    right=("SCORE", "RUNS", "FAILED", "FLIPS", "RETRY PASSES", "MIXED HASHES"),
                    plain=args.plain)
    return _run(args, lambda h: h.flaky(window=args.window), render)


def cmd_failures(args):

    def render(df):
        if df is None:
            return "no failures"
        if args.groups:
            print_table(["COUNT", "LAST SEEN", "TASKS", "PROJECTS", "EXIT", "SIGNATURE",
                         "MESSAGE"],
                        [[r.count, _when(r.last_seen), r.tasks, r.projects, r.exit_codes,
                          r.signature, _cut(r.message)] for r in df.itertuples()],
                        right=("COUNT",), plain=args.plain)
        else:
            print_table(["STARTED", "RUN", "PROJECT", "TASK", "EXIT", "MESSAGE"],
                        [[_when(r.started_at), r.run_id, r.project, _attempt(r),
                          _exit(r), _cut(r.message)] for r in df.itertuples()], plain=args.plain)
    call = (lambda h: h.failure_groups()) if args.groups else (lambda h: h.failures())
    return _run(args, call, render)


def cmd_regressions(args):

    def render(df):
        if df is None:
            return "no regressions: no lasting change of a task's duration found"
        print_table(["PROJECT", "TASK", "FROM", "RUN", "BEFORE", "AFTER", "CHANGE", "P"],
                    [[r.project, r.task, _when(r.changed_at), r.run_id,
                      f"{r.median_before:.1f}s", f"{r.median_after:.1f}s",
                      f"{r.ratio:.2f}x {r.direction}", f"{r.p_value:.1g}"]
                     for r in df.itertuples()],
                    right=("BEFORE", "AFTER", "P"), plain=args.plain)
    return _run(args, lambda h: h.regressions(args.task_name, window=args.window,
                                              min_ratio=args.min_ratio), render)


def _missing(value):
    import pandas as pd
    return value is None or bool(pd.isna(value))


def _when(ts):
    return "-" if _missing(ts) else f"{ts:%Y-%m-%d %H:%M}"


def _cut(text, width=80):
    """At most *width* characters, cut at a word boundary with an ellipsis."""
    text = " ".join(str(text or "").split())
    if len(text) <= width:
        return text
    cut = text[:width - 1].rsplit(" ", 1)[0] if " " in text[:width - 1] else text[:width - 1]
    return cut + "…"


def _attempt(r):
    return r.task + (f" #{r.attempt}" if not _missing(r.attempt) and r.attempt > 1 else "")


def _exit(r):
    if not _missing(r.signal):
        return f"signal {int(r.signal)}"
    return "-" if _missing(r.exit_code) else str(int(r.exit_code))
