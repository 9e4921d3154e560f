"""``ottolytics logs`` and ``ottolytics grep``: the terminal mirrors of
``History.logs()`` and ``History.grep()``, through the same read rule
(paths.open_log). ``logs --follow`` reads through runinfo.follow_output (sqlite3
and the standard library only), so it starts at once and polls cheaply.
"""

import json
import sys
import warnings

_KEEP = {"\t"}


def escape(text, terminal):
    """*text* for printing: on a terminal, control characters (ESC, BEL, NUL, C1,
    DEL...) are shown escaped (``\\x1b``) so a log cannot drive the terminal."""
    if not terminal:
        return text
    return "".join(c if (c.isprintable() or c in _KEEP) else repr(c)[1:-1] for c in text)


def escape_lines(text, terminal):
    """escape() for output that holds whole lines (a followed chunk, a fragment):
    its line ends stay line ends, everything else is escaped line by line."""
    return "\n".join(escape(line, terminal) for line in text.split("\n"))


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _missing(value):
    import pandas as pd
    return value is None or bool(pd.isna(value))


def _err(message):
    print(f"ottolytics: error: {escape(message, True)}", file=sys.stderr)


def _open(db, **filters):
    from ottolytics.analyze.history import open as open_history
    return open_history(db, **filters)


def _records(df, run_id=None):
    records = json.loads(df.to_json(orient="records", date_format="iso", date_unit="us"))
    if run_id is not None:
        for r in records:
            r["run_id"] = run_id
    return records


def _line_record(r):
    """One line of ``logs --json``: the run_logs columns, times in the one JSON
    time format (formatting.iso_utc)."""
    from ottolytics.core.formatting import iso_utc
    import pandas as pd
    return {"task": r.task if isinstance(r.task, str) else None,
            "attempt": None if _missing(r.attempt) else int(r.attempt),
            "stream": r.stream, "seq": int(r.seq),
            "at": None if _missing(r.at) else iso_utc(pd.Timestamp(r.at).to_pydatetime()),
            "text": r.text, "source": r.source}


def logs(db, run, task=None, stream=None, follow=False, as_json=False, jsonl=False):
    """Print a run's (or one task's) output; returns the exit code (the store's
    errors rise to the CLI's main, which prints their line)."""
    if follow:
        if task is None:
            _err("--follow needs TASK: ottolytics logs RUN TASK --follow")
            return 2
        if as_json or jsonl:
            _err("--follow prints the log as it grows; it has no --json or --jsonl")
            return 2
        return follow_task(db, run, task, stream)
    with _open(db) as h:  # the rows stream from it: closed when they are printed
        return _print_logs(h, run, task, stream, as_json, jsonl)


def _print_logs(h, run, task, stream, as_json, jsonl):
    from ottolytics.analyze.analytics import iter_run_logs
    uid = h.resolve(run)
    # Streamed: a log file is read line by line as it is printed, never whole.
    uid, rows, refused = iter_run_logs(h, uid, task)  # TaskNotFound rises to main
    from collections import namedtuple
    Row = namedtuple("Row", "task attempt stream seq at text source")
    every = (Row(*r) for r in rows)
    if stream:
        every = (r for r in every if r.stream == stream)
    shown = 0
    if jsonl:  # one line of output per line, each naming its run
        for r in every:
            print(json.dumps({"run_id": uid, **_line_record(r)}))
            shown += 1
    elif as_json:
        out = sys.stdout
        out.write(f'{{\n  "run_id": {json.dumps(uid)},\n  "lines": [')
        for r in every:
            out.write(("," if shown else "") + "\n    " + json.dumps(_line_record(r)))
            shown += 1
        out.write(("\n  ]" if shown else "]") + f',\n  "refused": {json.dumps(refused)}\n}}\n')
    else:
        tty = _is_tty(sys.stdout)
        header = None
        for r in every:
            shown += 1
            if task is None:
                here = (r.task, r.attempt, r.stream, r.source)
                if here != header:
                    header = here
                    name = r.task if isinstance(r.task, str) else "(run)"
                    attempt = "" if _missing(r.attempt) or int(r.attempt) == 1 \
                        else f" attempt {int(r.attempt)}"
                    print(f"== {escape(str(name), tty)}{attempt} {r.stream} ({r.source}) ==")
            text = r.text if r.source != "fragments" else r.text.rstrip("\n")
            print(escape_lines(text, tty))
        if not shown and not refused:
            what = f"task {task!r} of run {uid}" if task else f"run {uid}"
            print(f"no output was kept for {what}" + (f" on {stream}" if stream else ""),
                  file=sys.stderr)
    for message in refused:
        _err(message)
    return 1 if refused else 0


def follow_task(db, run, task, stream=None):
    """Print TASK's log of RUN and keep printing what is appended until the task
    ends (or Ctrl-C): the terminal side of runinfo.follow_output, which reads the
    store and the files (by the read rule; a refused path rises to main)."""
    from ottolytics.manage.runinfo import follow_output
    tty = _is_tty(sys.stdout)
    out = sys.stdout
    followed = follow_output(db, run, task, stream)
    try:
        for kind, value in followed:
            if kind == "attempt":
                print(f"== {escape(task, tty)} attempt {value} ==", file=out, flush=True)
            else:
                out.write(escape_lines(value, tty))
                out.flush()
    except KeyboardInterrupt:
        return 130
    finally:
        followed.close()
    return 0


def grep(db, pattern, project=None, since=None, task=None, max_matches=10_000,
         as_json=False, jsonl=False):
    """Print the lines matching *pattern*; 0 when some matched, 1 when none (as
    grep), 2 for a bad pattern or --since."""
    import re
    if max_matches < 1:
        _err(f"--max {max_matches}: must be 1 or more")
        return 2
    try:
        re.compile(pattern)
    except re.error as exc:
        _err(f"{pattern!r}: not a regular expression ({exc})")
        return 2
    try:
        with _open(db) as h, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = h.grep(pattern, since=since or None, task=task, project=project,
                        max_matches=max_matches)
    except ValueError as exc:
        _err(f"--since {since!r}: {exc}")
        return 2
    refused = df.attrs.get("refused", [])
    if as_json:
        print(json.dumps({"matches": _records(df), "refused": refused}, indent=2))
    elif jsonl:
        for r in _records(df):
            print(json.dumps(r))
    else:
        tty = _is_tty(sys.stdout)
        for r in df.itertuples(index=False):
            attempt = f"#{int(r.attempt)}" if not _missing(r.attempt) and int(r.attempt) > 1 \
                else ""
            where = f"{r.stream}" + (" tail" if r.source == "stderr tail" else "")
            print(escape(f"{r.run_id} {r.task}{attempt} {where}:{r.line}: {r.text}", tty))
    if refused:
        print(f"ottolytics: warning: {len(refused)} log file(s) not read: "
              f"{escape(refused[0], True)}" + (" (and more)" if len(refused) > 1 else ""),
              file=sys.stderr)
    return 0 if len(df) else 1
