"""The ``ottolytics`` command line: a thin layer over library functions.

argparse (not click or typer) because the shim and the quick commands have
start-up budgets of a few milliseconds; heavier modules are imported inside
the commands that need them.
"""

import os
import sqlite3
import sys

from ottolytics import __version__
from ottolytics.cli import render
from ottolytics.cli.common import _bad_count, _fail, _open_history, _unknown_project

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
        name = arg.partition("=")[0]
        if name not in _EXEC_OPTIONS or (name != "--db" and not seen_exec):
            return None
        taken = _option_value(argv, i)
        if taken is None:
            return None
        values[name[2:]], i = taken
    return None


def _option_value(argv, i):
    """(value, next index) for the option at argv[i], as ``--opt=V`` or ``--opt V``;
    None where argparse might read it otherwise (tests/test_cli_parsers.py)."""
    _name, eq, inline = argv[i].partition("=")
    if eq:
        return None if inline == "--" else (inline, i + 1)  # argparse drops a "--" value
    if i + 1 < len(argv) and not _may_be_option(argv[i + 1]):
        return argv[i + 1], i + 2
    return None


def _may_be_option(arg):
    """True for a word argparse may take for an option rather than a value: one that
    starts with '-', unless it is '-' alone or a negative number (argparse's own
    rule also looks at spaces and abbreviations; those are left to argparse)."""
    if not arg.startswith("-") or arg == "-":
        return False
    whole, dot, fraction = arg[1:].partition(".")
    number = (whole.isdecimal() and not dot) or (
        bool(dot) and fraction.isdecimal() and (whole == "" or whole.isdecimal()))
    return not number


# The quick commands' options: name -> (attribute, converter); None takes no value.
_QUICK = {
    "history": ({"-n": ("n", int), "--status": ("status", str), "--project": ("project", str),
                 "--since": ("since", str), "--db": ("db", str)}, ("task",), {"n": 20}),
    "list": ({"--limit": ("limit", int), "--project": ("project", str), "--db": ("db", str)},
             (), {"limit": 20}),
    "info": ({"--db": ("db", str)}, ("run",), {}),
}
_OUTPUT_FLAGS = {"--json": ("json", None), "--jsonl": ("jsonl", None), "--plain": ("plain", None)}
for _options, _p, _d in _QUICK.values():
    _options.update(_OUTPUT_FLAGS)  # render.add_output_flags on every quick command


def _fast_quick(argv):
    """Parse the quick commands (history, list, info) without argparse, whose
    import alone is a third of their start-up budget. Returns (command, args),
    or None for anything unusual (help, typos, bad values), which argparse
    then parses with its usual messages."""
    db = None
    if len(argv) >= 2 and argv[0].startswith("--db"):
        name, eq, inline = argv[0].partition("=")
        if name != "--db":
            return None
        db, argv = (inline, argv[1:]) if eq else (argv[1], argv[2:])
    if not argv or argv[0] not in _QUICK:
        return None
    options, positionals, defaults = _QUICK[argv[0]]
    values = dict.fromkeys([a for a, _c in options.values()] + list(positionals))
    values.update(defaults, db=db, json=False, jsonl=False, plain=False)
    free = list(positionals)
    i, rest = 0, argv[1:]
    while i < len(rest):
        name, eq, _inline = rest[i].partition("=")
        if name in options:
            attr, convert = options[name]
            if convert is None:
                if eq:
                    return None
                values[attr], i = True, i + 1
                continue
            taken = _option_value(rest, i)
            if taken is None:
                return None
            raw, i = taken
            try:
                values[attr] = convert(raw)
            except ValueError:
                return None
        elif rest[i].startswith("-") or not free:
            return None
        else:
            values[free.pop(0)], i = rest[i], i + 1
    if free and argv[0] == "info":
        return None  # RUN is required: let argparse say so
    return argv[0], _Args(**values)


def _store_failed(exc, args):
    """One line for an sqlite3 error met reading the store (locked, unreadable...)."""
    from ottolytics.store.migrations import explain
    from ottolytics.core.paths import db_path
    return _fail(str(explain(exc, db_path(args.db, getattr(args, "otto_home", None)))))


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
    from ottolytics.record.shim import exec_command
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return exec_command(command, db=args.db, project=args.project, task=args.task,
                        run=args.run)


def cmd_run_start(args):
    from ottolytics.record.runs import start_run
    try:
        params = _parse_params(args.param)
    except ValueError as exc:
        return _fail(str(exc), 2)
    print(start_run(db=args.db, project=args.project, params=params))
    return 0


def cmd_run_end(args):
    from ottolytics.record.runs import end_run
    status = end_run(args.run_id, db=args.db, status=args.status)
    if status is None:
        return _fail(f"run {args.run_id}: not found in the store; check the id "
                     "(ottolytics history) or the --db", 1)
    print(status)
    return 0


def _status_cell(status):
    from ottolytics.core.formatting import STATUS_SYMBOLS
    return f"{STATUS_SYMBOLS.get(status, '?')} {status}"


def _task_counts(r):
    from ottolytics.core.formatting import STATUS_SYMBOLS
    from ottolytics.store.statuses import TASK_COUNT_ORDER
    counts = " ".join(f"{STATUS_SYMBOLS[s]}{r['tasks_' + s]}"
                      for s in TASK_COUNT_ORDER
                      if r["tasks_" + s])
    return f"{r['tasks']} {counts}".strip()


def _notes(db, runs, spool=True):
    """Reading writes nothing: say what waits (listing.reading_notes)."""
    from ottolytics.core.formatting import printable
    from ottolytics.manage.listing import reading_notes
    for line in reading_notes(db, runs, spool=spool):
        print(printable(f"ottolytics: note: {line}"), file=sys.stderr)


def _check_status(status, task):
    """None, or the error for a --status that no run (or, with TASK, task) can have."""
    from ottolytics.store.migrations import RUN_STATUSES, TASK_STATUSES
    valid = TASK_STATUSES if task else RUN_STATUSES
    if status is None or status in valid:
        return None
    return _fail(f"--status {status}: not a {'task' if task else 'run'} status; use one of "
                 f"{', '.join(valid)}", 2)


def _no_runs(args, filters):
    """The line for an empty answer: which filters matched nothing, or that the
    store holds no runs at all. *filters* are (flag, value, active or None: set)."""
    from ottolytics.core.formatting import printable
    from ottolytics.manage.listing import has_runs
    given = [f"{flag} {value}" for flag, value, active in filters
             if (value not in (None, "") if active is None else active)]
    what = f"task {printable(repr(args.task))}" if getattr(args, "task", None) else None
    from ottolytics.store.migrations import StoreError
    try:
        stored = has_runs(args.db)
    except (sqlite3.Error, StoreError, OSError):  # only the wording depends on it
        stored = True
    if not stored:
        return "no runs recorded yet"
    if what and given:
        return printable(f"no runs of {what} match the filters ({', '.join(given)})")
    if what:
        return printable(f"no runs of {what}")
    if given:
        return printable(f"no runs match the filters ({', '.join(given)})")
    return "no runs recorded yet"


def cmd_history(args):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import duration, local_time, printable
    from ottolytics.manage.listing import recent_runs, task_history
    from ottolytics.core.formatting import human_bytes
    from ottolytics.core.timeutil import parse_since
    bad = _bad_count("-n", args.n) or _check_status(args.status, args.task)
    if bad is not None:
        return bad
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        return _fail(f"--since: {exc}", 2)
    if args.task:
        found = task_history(args.db, args.task, limit=args.n, status=args.status,
                             project=args.project, since=since)
        runs, summary = found["runs"], found["summary"]
    else:
        runs = recent_runs(args.db, limit=args.n, status=args.status, project=args.project,
                           since=since)
    if args.project and not runs:
        bad = _unknown_project(args)
        if bad is not None:
            return bad
    _notes(args.db, runs)
    if args.json or args.jsonl:
        for r in runs:
            render.iso_fields(r, "started_at", "finished_at")
        if args.task and not args.jsonl:
            render.print_records({"task": args.task, "summary": summary, "runs": runs}, False)
        else:
            render.print_records(runs, args.jsonl)
        return 0
    if not runs:
        print(_no_runs(args, [("-n", args.n, args.n == 0), ("--status", args.status, None),
                              ("--project", args.project, None),
                              ("--since", args.since, None)]))
        return 0
    if args.task:
        rows = [[local_time(r["started_at"]), _status_cell(r["status"]),
                 duration(r["duration_s"]), "" if r["exit_code"] is None else r["exit_code"],
                 r["attempts"], human_bytes(r["size_bytes"]), r["user"] or "-", r["project"],
                 r["run_id"]] for r in runs]
        print_table(["TIMESTAMP", "STATUS", "DURATION", "EXIT", "ATTEMPTS", "SIZE", "USER",
                     "PROJECT", "RUN"], rows, right=("DURATION", "SIZE", "EXIT"),
                    plain=args.plain)
        rate = summary["success_rate"]
        print(f"{printable(args.task)}: {summary['successes']} of "
              f"{summary['successes'] + summary['failures']} finished runs succeeded"
              + (f" ({rate:.0%})" if rate is not None else "")
              + f", over the {summary['runs']} runs shown")
        return 0
    rows = [[local_time(r["started_at"]), _status_cell(r["status"]), duration(r["duration_s"]),
             _task_counts(r), human_bytes(r["size_bytes"]), r["user"] or "-", r["project"],
             r["run_id"]] for r in runs]
    print_table(["TIMESTAMP", "STATUS", "DURATION", "TASKS", "SIZE", "USER", "PROJECT", "RUN"],
                rows, right=("DURATION", "SIZE"), plain=args.plain)
    return 0


def cmd_list(args):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import local_time
    from ottolytics.manage.listing import recent_runs
    from ottolytics.core.formatting import human_bytes
    if _bad_count("--limit", args.limit):
        return 2
    runs = recent_runs(args.db, limit=args.limit, project=args.project)
    if args.project and not runs:
        bad = _unknown_project(args)
        if bad is not None:
            return bad
    _notes(args.db, runs, spool=False)
    if args.json or args.jsonl:
        render.print_records([render.iso_fields(r, "started_at", "finished_at") for r in runs],
                             args.jsonl)
        return 0
    if not runs:
        print(_no_runs(args, [("--limit", args.limit, args.limit == 0),
                              ("--project", args.project, None)]))
        return 0
    print_table(["PROJECT", "TIMESTAMP", "TASKS", "STATUS", "SIZE"],
                [[r["project"], local_time(r["started_at"]), r["tasks"],
                  _status_cell(r["status"]), human_bytes(r["size_bytes"])] for r in runs],
                right=("TASKS", "SIZE"), plain=args.plain)
    return 0


def cmd_info(args):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import duration, local_time, printable
    from ottolytics.manage.runinfo import run_info
    from ottolytics.core.formatting import human_bytes
    info = run_info(args.db, args.run)
    if args.json or args.jsonl:
        render.iso_fields(info, "started_at", "finished_at")
        for t in info["tasks"]:
            render.iso_fields(t, "started_at", "finished_at")
        if args.jsonl:  # one line per task attempt, each naming its run
            render.print_jsonl({"run_id": info["run_id"], **t} for t in info["tasks"])
        else:
            render.print_records(info, False)
        return 0
    fields = [("run", info["run_id"]), ("project", info["project"]),
              ("status", _status_cell(info["status"])),
              ("started", local_time(info["started_at"])),
              ("finished", local_time(info["finished_at"])),
              ("duration", duration(info["duration_s"])), ("user", info["user"]),
              ("host", info["host"]), ("cwd", info["cwd"]), ("ottofile", info["ottofile"]),
              ("args", info["args"]), ("directory", info["run_dir"]),
              ("size (recorded)", human_bytes(info["size_bytes"])), ("source", info["source"])]
    fields += [(f"param {k}", v) for k, v in info["params"].items()]
    width = max(len(k) for k, _v in fields)
    for k, v in fields:
        if v is not None:
            print(printable(f"{k:<{width}}  {v}"))
    print()
    print_table(["TASK", "ATTEMPT", "STATUS", "DURATION", "EXIT", "DEPENDS ON"],
                [[t["task"], t["attempt"], _status_cell(t["status"]), duration(t["duration_s"]),
                  f"signal {t['signal']}" if t["signal"] is not None else
                  "" if t["exit_code"] is None else t["exit_code"], ", ".join(t["depends_on"])]
                 for t in info["tasks"]], right=("DURATION", "EXIT"), plain=args.plain)
    print(f"\ndependency order: {printable(' -> '.join(info['order'])) or '-'}")
    for t in info["tasks"]:
        paths = [(k, t[k + "_path"]) for k in ("script", "stdout", "stderr") if t[k + "_path"]]
        if paths or t["stderr_tail"]:
            print(f"\n{printable(t['task'])} (attempt {t['attempt']}, {t['status']})")
            for k, path in paths:
                why = t.get("refused", {}).get(k)
                print(printable(f"  {k:<7} {path}" + (f"  (not read: {why})" if why else "")))
            if t["stderr_tail"]:
                print("  stderr tail:")
                for line in t["stderr_tail"].rstrip("\n").splitlines()[-20:]:
                    print(f"    {printable(line)}")
    return 0


def cmd_logs(args):
    from ottolytics.cli.logs import logs
    return logs(args.db, args.run, args.task, args.stream, args.follow, args.json,
                args.jsonl)


def cmd_grep(args):
    from ottolytics.cli.logs import grep
    if _bad_count("--max", args.max, 1):
        return 2
    if args.project:
        unknown = _unknown_project(args)
        if unknown is not None:
            return unknown
    return grep(args.db, args.pattern, project=args.project, since=args.since, task=args.task,
                max_matches=args.max, as_json=args.json, jsonl=args.jsonl)


def cmd_stats(args):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import duration, printable
    from ottolytics.core.timeutil import since_is_duration
    from ottolytics.analyze.stats import stats
    from ottolytics.core.timeutil import parse_since
    if _bad_count("-n", args.n):
        return 2
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        return _fail(f"--since: {exc}", 2)
    with _open_history(args) as h:
        result = stats(h.with_filters(since=since), task=args.task, n=args.n)
    if args.json or args.jsonl:
        doc = {k: render.frame_records(v) for k, v in result.items()}
        doc["overall"] = doc["overall"][0] if doc["overall"] else {}
        if args.jsonl:
            render.print_records([{"kind": "overall", **doc["overall"]}], True)
            for kind in ("top", "trend"):
                for r in doc.get(kind, []):
                    render.print_records([{"kind": kind, **r}], True)
        else:
            render.print_records(doc, False)
        return 0
    o = result["overall"].iloc[0]
    pct = lambda v: "-" if v is None or v != v else f"{v:.1%}"  # noqa: E731
    secs = lambda v: "-" if v is None or v != v else duration(float(v))  # noqa: E731
    period = "all time" if not args.since else (
        f"last {args.since}" if since_is_duration(args.since) else f"since {args.since}")
    print(f"{period}: {int(o['runs'])} runs, {int(o['tasks'])} tasks; runs succeeded "
          f"{pct(o['success_rate'])}, tasks {pct(o['task_success_rate'])}; "
          f"run duration avg {secs(o['avg_duration_s'])}, p95 {secs(o['p95_duration_s'])}")
    top = result["top"]
    if len(top):
        print("busiest: " + ", ".join(f"{printable(r.task)} ({r.total})"
                                      for r in top.head(3).itertuples()))
        print()
        print_table(["PROJECT", "TASK", "TOTAL", "SUCCESS", "FAILED", "SUCCESS RATE", "AVG",
                     "P95"],
                    [[r.project, r.task, r.total, r.success, r.failed, pct(r.success_rate),
                      secs(r.avg_duration_s), secs(r.p95_duration_s)] for r in top.itertuples()],
                    right=("TOTAL", "SUCCESS", "FAILED", "SUCCESS RATE", "AVG", "P95"),
                    plain=args.plain)
    if args.task:
        trend = result["trend"]
        print()
        if not len(trend):
            print(f"no runs of task {printable(repr(args.task))} in that period")
        else:
            print_table(["WEEK", "PROJECT", "RUNS", "SUCCESS", "FAILED", "SUCCESS RATE", "P50",
                         "P95"],
                        [[r.week.strftime("%G-W%V"), r.project, r.runs, r.success, r.failed,
                          pct(r.success_rate), secs(r.p50_duration_s), secs(r.p95_duration_s)]
                         for r in trend.itertuples()],
                        title=f"{args.task} by week",
                        right=("RUNS", "SUCCESS", "FAILED", "SUCCESS RATE", "P50", "P95"),
                        plain=args.plain)
    return 0


def cmd_usage(args):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import local_time, printable
    from ottolytics.core.formatting import human_bytes
    from ottolytics.cli.terminal import progress
    from ottolytics.manage.usage import usage
    try:
        with progress("measuring OTTO_HOME") as advance:
            report = usage(args.db, home=args.otto_home, project=args.project, progress=advance)
    except ValueError as exc:
        return _fail(str(exc))
    if args.project and not report["projects"]:
        return _fail(f"--project {args.project}: no such project under {report['home']}; "
                     "run 'ottolytics usage' to see them")
    if args.json or args.jsonl:
        render.iso_fields(report, "measured_at")
        for item in report["projects"]:
            render.iso_fields(item, "oldest_run")
        for item in report["largest_runs"]:
            render.iso_fields(item, "started_at")
        if args.jsonl:  # the rows of its two tables, each with its kind
            render.print_jsonl([{"kind": "project", **r} for r in report["projects"]]
                               + [{"kind": "largest_run", **r} for r in report["largest_runs"]])
        else:
            render.print_records(report, False)
        return 0
    print(f"{printable(report['home'])}: {human_bytes(report['total_bytes'])} measured now "
          f"({report['total_bytes']} bytes of files and links, {report['entries']} entries)")
    print()
    print_table(["PROJECT", "RUNS", "RUN BYTES", "CACHE", "ORPHANED CACHE", "OLDEST RUN"],
                [[p["project"], p["runs"], human_bytes(p["run_bytes"]),
                  human_bytes(p["cache_bytes"]), human_bytes(p["orphan_cache_bytes"]),
                  local_time(p["oldest_run"])] for p in report["projects"]],
                right=("RUNS", "RUN BYTES", "CACHE", "ORPHANED CACHE"), plain=args.plain)
    if report["largest_runs"]:
        print()
        print_table(["RUN", "PROJECT", "STARTED", "SIZE NOW", "PATH"],
                    [[r["run_id"] or "-", r["project"], local_time(r["started_at"]),
                      human_bytes(r["bytes"]), r["path"]] for r in report["largest_runs"]],
                    title="largest runs", right=("SIZE NOW",), plain=args.plain)
    print(f"\norphaned cache: {human_bytes(report['orphan_cache_bytes'])}")
    for line in report["recommendations"]:
        print(printable(f"- {line}"))
    for e in report["errors"][:10]:
        print(printable(f"ottolytics: warning: {e['path']}: {e['error']}"), file=sys.stderr)
    if len(report["errors"]) > 10:
        print(f"ottolytics: warning: {len(report['errors']) - 10} more unreadable paths "
              "(see --json)", file=sys.stderr)
    recorded = report.get("recorded") or {}
    if "error" in recorded:
        print(printable(f"ottolytics: warning: {recorded['error']}"), file=sys.stderr)
    return 0


def _print_plan(p, plain=False):
    from ottolytics.cli.render import print_table
    from ottolytics.core.formatting import local_time, printable
    from ottolytics.core.formatting import human_bytes
    if p.runs:
        print_table(["RUN", "PROJECT", "STATUS", "STARTED", "SIZE NOW", "WHY"],
                    [[c.run_id, c.project, c.status, local_time(c.started_at),
                      human_bytes(c.bytes) if c.path else "-", c.reason] for c in p.runs],
                    title=f"runs to delete ({len(p.runs)})", right=("SIZE NOW",), plain=plain)
    if p.cache:
        print_table(["CACHE FILE", "SIZE NOW"],
                    [[path, human_bytes(b)] for path, b, _ in p.cache],
                    title=f"orphaned cache files to delete ({len(p.cache)})",
                    right=("SIZE NOW",), plain=plain)
    for run_id, why in p.protected[:20]:
        print(printable(f"kept {run_id}: {why}"))
    if len(p.protected) > 20:
        print(f"kept {len(p.protected) - 20} more runs against the policy (see --json)")
    print(f"{len(p.runs)} runs and {len(p.cache)} cache files, {human_bytes(p.bytes)} "
          f"measured now; {p.kept} runs kept")
    rows_only = sum(1 for c in p.runs if not c.path)
    if rows_only:
        print(f"{rows_only} of these runs were recorded without a directory: only their "
              "rows go")


def _plan_dict(p):
    doc = p.as_dict()
    for run in doc["runs"]:
        render.iso_fields(run, "started_at")
    return doc


def _plan_rows(p):
    """clean --jsonl: one line per run and per cache file the plan deletes."""
    doc = _plan_dict(p)
    return ([{"kind": "run", **r} for r in doc["runs"]]
            + [{"kind": "cache", **c} for c in doc["cache"]])


def cmd_clean(args):
    from ottolytics.manage.clean import execute, plan
    from ottolytics.core.formatting import human_bytes
    from ottolytics.cli.terminal import confirm, progress
    for flag, value in (("--keep", args.keep), ("--keep-last", args.keep_last),
                        ("--keep-failed", args.keep_failed)):
        if value is not None and (value != value or value < 0):  # (nan: not a number)
            return _fail(f"{flag} {value}: must be a number, 0 or more", 2)
    finished = _finish_interrupted_clean(args)
    with progress("measuring OTTO_HOME") as advance:
        p = plan(args.db, args.otto_home, keep_days=args.keep, keep_last=args.keep_last,
                 keep_failed=args.keep_failed, project=args.project, cache=args.cache,
                 cache_only=args.cache_only, progress=advance,
                 forget_missing=args.forget_missing, sync=args.sync and not args.dry_run)
    elsewhere = p.files_elsewhere
    if elsewhere:
        print(f"ottolytics: warning: {len(elsewhere)} runs to delete have no directory under "
              f"{p.home}: their files are elsewhere, so their rows are kept; pass "
              "--otto-home DIR, or --forget-missing to drop those rows", file=sys.stderr)
    machine = args.json or args.jsonl
    if args.json and (args.dry_run or not args.yes):
        render.print_json({"dry_run": True, "plan": _plan_dict(p)})
    elif args.jsonl and (args.dry_run or not args.yes):
        render.print_jsonl(_plan_rows(p))
    elif not machine:
        _print_plan(p, args.plain)
    if not p.runs and not p.cache:
        if not machine:
            held = len(p.cache_recent)
            print("nothing to delete" + (
                f" ({held} orphaned cache file{'s' if held != 1 else ''} changed within the "
                "last hour: kept, an otto may be starting a run with them; they go in a "
                "later clean)" if held else ""))
        return 1 if finished is not None and finished.errors else 0
    if args.dry_run:
        if not machine:
            print("dry run: nothing deleted")
        return 0
    if not args.yes:
        if sys.stdin.isatty() and sys.stdout.isatty():
            if not confirm(f"delete {len(p.runs)} runs and {len(p.cache)} cache files "
                           f"({human_bytes(p.bytes)})?"):
                print("nothing deleted")
                return 1
        else:
            print("nothing deleted: not a terminal, so pass --yes to delete (or --dry-run)",
                  file=sys.stderr)
            return 2
    with progress("deleting", total=len(p.runs) + len(p.cache)) as advance:
        result = execute(p, args.db, progress=lambda n: advance(n))
    if args.json:
        render.print_json({"dry_run": False, "plan": _plan_dict(p), "result": result.as_dict()})
    elif args.jsonl:  # the plan's rows, then what was done
        render.print_jsonl(_plan_rows(p) + [{"kind": "result", **result.as_dict()}])
    else:
        for path, message in result.errors:
            _fail(f"{path}: {message}")
        print(f"deleted {len(result.deleted)} runs and {result.cache_deleted} cache files; "
              f"freed {human_bytes(result.freed)} ({result.freed} bytes, measured)")
        if result.kept:
            print(f"kept {len(result.kept)} runs in the store: their directories could not "
                  "be removed entirely (see the errors above)")
    return 1 if result.errors or (finished is not None and finished.errors) else 0


def _finish_interrupted_clean(args):
    """Finish a clean that was killed midway (a dry run only says so); the Result or None."""
    from ottolytics.manage.clean import finish_interrupted
    from ottolytics.core.formatting import human_bytes
    found = finish_interrupted(args.db, args.otto_home, dry_run=args.dry_run)
    if found is None:
        return None
    if found.finished is None:
        print("ottolytics: warning: a clean was interrupted; 'ottolytics clean' or "
              "'ottolytics doctor' finishes it", file=sys.stderr)
        return None
    result = found.finished
    if not (args.json or args.jsonl):
        for path, message in result.errors:
            print(f"ottolytics: error: {path}: {message}", file=sys.stderr)
        print(f"finished an interrupted clean: deleted {len(result.deleted)} runs, "
              f"freed {human_bytes(result.freed)} (measured)")
    return result


def cmd_doctor(args):
    import sqlite3
    from ottolytics.manage.doctor import as_dicts, diagnose, healthy
    from ottolytics.store.migrations import StoreError
    from ottolytics.core.timeutil import parse_duration
    try:
        age = parse_duration(args.max_age) if args.max_age else None
    except ValueError as exc:
        return _fail(f"--max-age: {exc}", 2)
    try:
        checks = diagnose(args.db, max_run_age=age)
    except (StoreError, sqlite3.Error, OSError) as exc:
        return _fail(f"doctor: {exc}")
    if args.json:
        render.print_json({"ok": healthy(checks), "checks": as_dicts(checks)})
    elif args.jsonl:
        render.print_jsonl(as_dicts(checks))
    else:
        for c in checks:
            print(f"{'ok ' if c.ok else 'BAD'}  {c.name:<10} {c.detail}")
    return 0 if healthy(checks) else 1


def _sync_rows(doc):
    """sync --jsonl: one line per source with its counts, then one per skipped item."""
    sources = sorted(set(doc["added"]) | set(doc["updated"]) | set(doc["unchanged"])
                     | {k["source"] for k in doc["skipped"]})
    return ([{"kind": "source", "source": s, "added": doc["added"].get(s, 0),
              "updated": doc["updated"].get(s, 0), "unchanged": doc["unchanged"].get(s, 0),
              "skipped": sum(1 for k in doc["skipped"] if k["source"] == s)} for s in sources]
            + [{"kind": "skipped", **k} for k in doc["skipped"]])


def cmd_sync(args):
    from ottolytics.sources.sync import summary_lines, sync
    for path in args.paths:
        if not os.path.exists(path):
            return _fail(f"{path}: does not exist; pass an OTTO_HOME, an executions.db, or a "
                         "oneshot directory or session file", 2)
    report = sync(args.db, otto_home_dir=args.otto_home, source=args.source,
                  paths=args.paths)
    if args.json:
        render.print_json(report.as_dict())
    elif args.jsonl:
        render.print_jsonl(_sync_rows(report.as_dict()))
    else:
        from ottolytics.core.formatting import printable
        print("\n".join(printable(line) for line in summary_lines(report, verbose=args.verbose)))
    return 0


def cmd_export_parquet(args):
    try:
        with _open_history(args) as h:
            summary = h.to_parquet(args.directory)
    except ValueError as exc:
        return _fail(str(exc))
    if args.json:
        render.print_json(summary)
    elif args.jsonl:
        render.print_jsonl([summary])
    else:
        print(f"{args.directory}: wrote {summary['written']} chunks "
              f"({summary['rows'].get('tasks', 0)} tasks), {summary['unchanged']} unchanged, "
              f"{summary['removed']} removed")
    return 0


def cmd_export_prometheus(args):
    from ottolytics.export.prometheus import write_metrics
    from ottolytics.core.timeutil import parse_duration
    try:
        window = parse_duration(args.window)
    except ValueError as exc:
        return _fail(f"--window: {exc}", 2)
    for flag, value in (("--max-tasks", args.max_tasks), ("--max-projects", args.max_projects)):
        if value < 1:
            return _fail(f"{flag} {value}: give a number of at least 1", 2)
    with _open_history(args) as h:
        path = write_metrics(h, args.file, window, max_tasks=args.max_tasks,
                             max_projects=args.max_projects)
    print(path)
    return 0


def cmd_report_weekly(args):
    from ottolytics.export.report import to_csv_text, weekly, write_csv
    try:
        with _open_history(args) as h:
            df, hint = weekly(h, args.week)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.json or args.jsonl:
        from datetime import datetime
        from ottolytics.core.formatting import iso_utc
        records = render.frame_records(df)
        for r in records:  # the week's bounds, local midnights, as UTC like all JSON times
            for name in ("week_start", "week_end"):
                r[name] = iso_utc(datetime.fromisoformat(r[name])) if r[name] else None
        render.print_records(records, args.jsonl)
        if hint:
            print(f"ottolytics: {hint}", file=sys.stderr)
        return 0
    if args.out:
        try:
            write_csv(df, args.out)
        except OSError as exc:
            return _fail(f"--out {exc}" if not str(exc).startswith("[Errno") else
                         f"--out {args.out}: {exc.strerror}")
        print(args.out if not hint else f"{args.out}: {hint}; wrote the header only")
    else:
        text = to_csv_text(df)
        if sys.stdout.isatty():  # for the eyes: no escape sequence from a cell reaches it
            from ottolytics.core.formatting import printable
            text = "".join(printable(line) + "\n" for line in text.split("\r\n")[:-1])
        sys.stdout.write(text)
        if hint:
            print(f"ottolytics: {hint}; the report has the header only", file=sys.stderr)
    return 0


def cmd_synth(args):
    from ottolytics.tools.synth import synthesize
    if args.runs < 1 or args.tasks_per_run < 1 or args.days <= 0:
        return _fail("--runs, --tasks-per-run and --days must be positive", 2)
    end = None
    if args.end:
        import time
        from ottolytics.core.timeutil import to_unix
        try:
            end = time.time() if args.end == "now" else to_unix(args.end)
        except ValueError:
            return _fail(f"--end {args.end!r}: use 'now' or a date such as 2026-11-21", 2)
    try:
        summary = synthesize(args.out, runs=args.runs, tasks_per_run=args.tasks_per_run,
                             seed=args.seed, days=args.days, end=end, force=args.force)
    except (FileExistsError, ValueError) as exc:
        return _fail(str(exc), 2)
    except (OSError, sqlite3.Error) as exc:
        return _fail(f"{args.out}: cannot write it ({exc})")
    print(f"wrote {summary['runs']} runs and {summary['tasks']} tasks to {args.out} "
          f"in {summary['seconds']:.1f}s")
    return 0


def cmd_demo(args):
    from ottolytics.tools.demo import run_demo
    return run_demo(sample=args.sample, out=args.out)


def cmd_mcp(args):
    try:
        from ottolytics.mcp.server import serve
    except ImportError as exc:
        return _fail(f"the MCP server needs the 'mcp' package ({exc}); "
                     "pip install 'mcp>=2.3,<3'")
    serve(args.db)
    return 0


def cmd_sample(args):
    from ottolytics.tools.sample import generate
    try:
        summary = generate(args.out, seed=args.seed, force=args.force)
    except FileExistsError as exc:
        return _fail(str(exc), 2)
    print(f"wrote {summary['recorded_runs']} recorded runs and {summary['otto_runs']} otto "
          f"runs (imported by sync) to {summary['home']}; the store is {summary['store']}")
    return 0


def cmd_bench(args):
    if args.scale:
        from ottolytics.tools.bench_scale import main as scale_main
        return scale_main(args.scale, only=args.only, out=args.out, work=args.work)
    from ottolytics.tools.bench import main as bench_main
    return bench_main(quick=args.quick, only=args.only, out=args.out)


# -- parser -----------------------------------------------------------------

def _parser_class():
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse's parser, its errors one line (exit 2) that says what to do,
        not the usage block and then the error: every error of ottolytics is one
        line. ``--help`` still prints the usage."""

        def parse_known_args(self, args=None, namespace=None):
            self._given = list(sys.argv[1:] if args is None else args)
            return super().parse_known_args(args, namespace)

        def error(self, message):
            import re
            hint = ""
            flag = re.match(r"argument (-\S+?)(?:/\S+)?: expected one argument", message)
            given = getattr(self, "_given", [])
            if flag and flag.group(1) in given:
                after = given[given.index(flag.group(1)) + 1:]
                if after and after[0].startswith("-"):  # a value argparse took for a flag
                    hint = f" (a value that starts with '-' is written {flag.group(1)}=VALUE)"
            self.exit(2, f"{self.prog}: error: {message}{hint}; see '{self.prog} --help'\n")
    return Parser


def build_parser():
    import argparse
    Parser = _parser_class()
    parser = Parser(
        prog="ottolytics", description="Run-history analytics for otto and other task runners.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ottolytics {__version__}")
    parser.add_argument("--db", help="the store file (default: see below)")
    common = Parser(add_help=False)
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
    from ottolytics.store.statuses import RUN_END_STATUSES
    re_.add_argument("--status", choices=RUN_END_STATUSES,
                     help="override the status derived from the run's tasks")
    re_.set_defaults(func=cmd_run_end)

    json_flags = render.add_output_flags

    p = sub.add_parser("history", parents=[common], help="recent runs, or one task's, newest first")
    p.add_argument("task", nargs="?", metavar="TASK", help="show this task's runs instead")
    p.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--status", help="only runs (or, with TASK, task runs) with this status")
    p.add_argument("--project", help="only this project's runs")
    p.add_argument("--since", help="only runs started since then: 7d or 12h ago (a unit is "
                   "needed: s m h d w), unix seconds, a date (2026-11-01) or an ISO time "
                   "(2026-11-01T08:00Z); no zone means UTC")
    json_flags(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("list", parents=[common], help="runs as otto lists them: project, "
                       "time, tasks, status, size")
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--project", help="only this project's runs")
    json_flags(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", parents=[common], help="one run: metadata, tasks, paths, order")
    p.add_argument("run", metavar="RUN", help="a run id (or a unique prefix), otto's unix "
                   "timestamp, or 'latest'")
    json_flags(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("logs", parents=[common], help="print (or follow) a run's or a task's "
                       "output", description="Print a run's output task by task, or one "
                       "task's: its log files (only regular files inside the run's own "
                       "directory), else the output the store kept.")
    p.add_argument("run", metavar="RUN", help="a run id (or a unique prefix of at least 4 "
                   "characters), otto's unix timestamp, or 'latest'")
    p.add_argument("task", nargs="?", metavar="TASK", help="only this task (its last attempt "
                   "when following)")
    p.add_argument("--stream", choices=["stdout", "stderr"], help="only this stream")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing what the task "
                   "writes until it ends (needs TASK)")
    json_flags(p, plain=False)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("grep", parents=[common], help="search the logs and stderr tails the "
                       "history holds", description="Lines matching PATTERN (a Python "
                       "regular expression) in log files, stored log output and stderr "
                       "tails, newest first. Exits 0 when some matched, 1 when none.")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("--project", help="only this project's runs")
    p.add_argument("--since", help="only runs since then: 7d or 12h ago, unix seconds, "
                   "an ISO date or time")
    p.add_argument("--task", help="only this task")
    p.add_argument("--max", type=int, default=10_000, help="at most this many lines "
                   "(default 10000)")
    json_flags(p, plain=False)
    p.set_defaults(func=cmd_grep)

    p = sub.add_parser("stats", parents=[common], help="success rates and durations, "
                       "busiest tasks, a task's weekly trend")
    p.add_argument("task", nargs="?", metavar="TASK", help="also show this task's weekly trend")
    p.add_argument("--since", default="30d", help="period: 7d or 12h ago, unix "
                   "seconds, a date (2026-11-01) or an ISO time, no zone meaning "
                   "UTC (default 30d; "
                   "'' for all time)")
    p.add_argument("-n", type=int, default=10, help="how many tasks in the table (default 10)")
    json_flags(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("usage", parents=[common], help="disk usage of OTTO_HOME by project")
    p.add_argument("--project", help="only this project")
    p.add_argument("--otto-home", help="OTTO_HOME to measure (default $OTTO_HOME or ~/.otto)")
    json_flags(p)
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser("clean", parents=[common], help="delete old runs by retention policy",
                       description="Delete old runs from the store and OTTO_HOME. Without "
                       "--yes it asks on a terminal; elsewhere it prints the plan, deletes "
                       "nothing and exits 2.")
    p.add_argument("--keep", type=float, metavar="DAYS", help="keep runs younger than DAYS "
                   "(default from ottolytics.toml, otto's retention keys, else 30)")
    p.add_argument("--keep-last", type=int, metavar="N", help="keep each project's newest N "
                   "runs (default 10)")
    p.add_argument("--keep-failed", type=float, metavar="DAYS", help="keep failed runs "
                   "younger than DAYS (default 60)")
    p.add_argument("--project", help="only this project")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", action="store_true", help="also delete orphaned cache files")
    cache.add_argument("--cache-only", action="store_true",
                       help="delete only orphaned cache files, no runs")
    p.add_argument("--dry-run", action="store_true", help="show the plan, delete nothing")
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument("--otto-home", help="OTTO_HOME to clean (default $OTTO_HOME or ~/.otto)")
    p.add_argument("--no-sync", dest="sync", action="store_false",
                   help="don't import new otto runs first")
    p.add_argument("--forget-missing", action="store_true",
                   help="also drop the rows of runs whose directories are not under this "
                   "OTTO_HOME (by default they are kept, with a warning)")
    json_flags(p)
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("export", help="write the history as Parquet or Prometheus metrics")
    export_sub = p.add_subparsers(dest="export_command", metavar="parquet|prometheus")
    ep = export_sub.add_parser("parquet", parents=[common],
                               help="a Hive-partitioned Parquet dataset (incremental)")
    ep.add_argument("directory", metavar="DIR")
    json_flags(ep, plain=False)
    ep.set_defaults(func=cmd_export_parquet)
    pp = export_sub.add_parser("prometheus", parents=[common],
                               help="a textfile for node_exporter's textfile collector")
    pp.add_argument("file", metavar="FILE")
    pp.add_argument("--window", default="7d",
                    help="window for durations and success ratios (default 7d)")
    pp.add_argument("--max-tasks", type=int, default=100, metavar="N",
                    help="tasks with series of their own, the most recently run (default "
                         "100); the rest are summed into task=\"__other__\"")
    pp.add_argument("--max-projects", type=int, default=20, metavar="N",
                    help="projects with series of their own (default 20); the rest are "
                         "summed into project=\"__other__\"")
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
    json_flags(p, plain=False)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("sync", parents=[common],
                       help="import history that otto, workflow-manager and oneshot wrote",
                       description="Import existing histories, incrementally: a second sync "
                       "adds nothing. Without PATH: otto under OTTO_HOME, plus "
                       "~/.workflow-manager/executions.db and ~/.oneshot/sessions when they exist.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="an OTTO_HOME, an executions.db, or a oneshot directory or session file")
    p.add_argument("--otto-home", help="OTTO_HOME to import (default $OTTO_HOME or ~/.otto)")
    p.add_argument("--source", choices=["otto", "workflow-manager", "oneshot"],
                   help="import only this source, or read PATHs as this source")
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped item")
    json_flags(p, plain=False)
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

    p = sub.add_parser("demo", help="show what ottolytics does, on the sample history")
    p.add_argument("--sample", help="the sample OTTO_HOME (default ./data/sample, else one "
                   "is generated)")
    p.add_argument("--out", help="where to write the copy, CSV, metrics and plots "
                   "(default ./demo-output)")
    p.set_defaults(func=cmd_demo)

    from ottolytics.cli.questions import add_parsers
    add_parsers(sub, common, json_flags)

    p = sub.add_parser("mcp", parents=[common], help="serve the history to AI assistants "
                       "(Model Context Protocol, stdio)",
                       description="A read-only MCP server over stdio with the tools "
                       "list_execution_history, get_run, get_task_logs, task_stats and "
                       "failure_groups.")
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser("sample", help="write the realistic sample history (an OTTO_HOME)")
    p.add_argument("out", metavar="DIR")
    p.add_argument("--seed", type=int, default=2026, help="the default seed gives data/sample")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="measure speed and size against baselines")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check")
    p.add_argument("--only", action="append", help="run only these rows (repeatable)")
    p.add_argument("--out", help="also write the results as JSON to this file")
    p.add_argument("--scale", choices=("100k", "1M", "10M"),
                   help="the read engine and the Parquet dataset over a synthetic store of "
                        "this many tasks (kept in --work and reused)")
    p.add_argument("--work", metavar="DIR", help="with --scale: where the synthetic stores "
                   "are kept (default $OTTOLYTICS_BENCH_WORK, else ~/.cache/ottolytics/bench)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    fast = _fast_exec(argv)
    if fast is not None:
        return cmd_exec(fast)
    quick = _fast_quick(argv)
    if quick is not None:
        command, args = quick
        return _run({"history": cmd_history, "list": cmd_list, "info": cmd_info}[command], args)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        group = parser if args.command not in ("run", "export", "report") else next(
            a for a in parser._subparsers._group_actions
            if a.choices and args.command in a.choices).choices[args.command]
        group.print_help()  # as a bare `ottolytics`: the help, and exit 2 (a usage error)
        return 2
    if not hasattr(args, "db"):
        args.db = None
    return _run(args.func, args)


def _run(func, args):
    """Run one command: the one place where an error becomes its exit code and
    its one line (core.errors: each error's exit_code, as docs/cli.md lists
    them; an sqlite3 error as the store's; any other OSError 1)."""
    from ottolytics.core.errors import OttolyticsError
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OttolyticsError as exc:
        return _fail(exc, exc.exit_code)
    except sqlite3.Error as exc:
        return _store_failed(exc, args)
    except OSError as exc:
        return _fail(exc)


def _quiet_broken_pipe():
    """e.g. `ottolytics history | head`: stop quietly, as other CLI tools do."""
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
