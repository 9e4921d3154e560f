"""``ottolytics mcp``: the history for AI assistants, as a Model Context Protocol
server over stdio (the official ``mcp`` SDK).

Five tools, each with a JSON schema and paged or bounded results:
``list_execution_history``, ``get_run``, ``get_task_logs``, ``task_stats`` and
``failure_groups``. The server is read-only: it opens the store with SQLite's
``mode=ro`` (and DuckDB attaches it READ_ONLY), and the only files it reads are
the log files that a task's row in the store names, and only those that
paths.open_log allows (inside the run's own tree, regular files, no symlink
out). Outputs are sized for a model: long texts are cut with a marker that says
how much was cut. DuckDB and pandas load only when a tool that needs them
(task_stats, failure_groups) runs.
"""

import os
import sqlite3

from ottolytics.core import errors
from ottolytics.core.formatting import iso_utc
from ottolytics.manage.listing import run_page
from ottolytics.store.migrations import RUN_STATUSES, StoreError
from ottolytics.core.paths import db_path
from ottolytics.core.timeutil import to_unix

MAX_LIMIT = 200
MAX_TEXT = 4000          # characters of a stderr tail or message in a result
MAX_LOG_BYTES = 64_000   # bytes of log text in one get_task_logs result
MAX_LOG_LINES = 5000

INSTRUCTIONS = """\
Run history of task runners (otto, make, CI steps, workflow managers) recorded by
ottolytics. Start with list_execution_history (newest first, paged with offset), then
get_run for one run's tasks, exit codes and log paths, get_task_logs for a task's
output, task_stats for one task's reliability and speed, and failure_groups for the
recurring failures. Run ids may also be 'latest', a unique prefix of at least 4
characters, or otto's unix timestamp."""


class Refused(errors.Refused):
    """A bad argument or an unknown run: the message goes back to the model."""


def _cut(text, limit=MAX_TEXT):
    """*text*, keeping its end, with a marker when something was cut."""
    if text is None or len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"[... {cut:,} earlier characters cut ...]\n" + text[-limit:]


def _since(value, name="since"):
    """Unix seconds (a bare number), '7d' or '12h' (ago), an ISO date or time ->
    unix seconds, by the one reader of a point in time (timeutil.to_unix)."""
    if value is None or value == "":
        return None
    try:
        return to_unix(value)
    except ValueError as exc:
        raise Refused(f"{name}={value!r}: {exc}") from None


def _bounded(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{name}={value!r}: must be a whole number from {low} to {high}")
    return value


class HistoryTools:
    """The tools' logic, independent of the protocol (and testable without it)."""

    def __init__(self, db=None):
        self.path = os.path.abspath(db_path(db))
        self.home = os.path.dirname(self.path)
        self._history = None

    def _conn(self):
        from ottolytics.store.connection import open_readonly
        if not os.path.exists(self.path):
            raise Refused(f"{self.path}: no store here; record runs first or start the "
                          "server with --db PATH")
        try:
            # the store's own read-only opening: URI-escaped path, busy timeout,
            # text decoding, and tracking (store/inprocess) beside DuckDB's SQLite
            return open_readonly(self.path)
        except (StoreError, sqlite3.Error) as exc:
            raise Refused(f"{self.path}: cannot be read as an ottolytics store ({exc})") \
                from None

    def close(self):
        """Close the History the analytics tools opened, if they did."""
        if self._history is not None:
            self._history.close()
            self._history = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if self._history is None:
            from ottolytics.analyze.history import open as open_history
            self._history = open_history(self.path)
        return self._history

    # -- tools ------------------------------------------------------------------

    def list_execution_history(self, limit=10, offset=0, project=None, task=None,
                               status=None, since=None):
        limit = _bounded(limit, "limit", 1, MAX_LIMIT)
        offset = _bounded(offset, "offset", 0, 10**9)
        if status is not None and status not in RUN_STATUSES:
            raise Refused(f"status={status!r}: use one of {', '.join(RUN_STATUSES)}")
        after = _since(since)
        conn = self._conn()
        try:
            page = run_page(conn=conn, limit=limit, offset=offset, status=status,
                            project=project, since=after, task=task)
        finally:
            conn.close()
        for r in page["runs"]:
            counts = {k[6:]: r.pop(k) for k in list(r) if k.startswith("tasks_")}
            r["task_counts"] = {k: v for k, v in counts.items() if v}
            r["started_at"], r["finished_at"] = iso_utc(r["started_at"]), iso_utc(
                r["finished_at"])
        return page

    def get_run(self, run_id, tasks_limit=100, tasks_offset=0):
        from ottolytics.manage.runinfo import RunNotFound, run_info
        tasks_limit = _bounded(tasks_limit, "tasks_limit", 1, 1000)
        tasks_offset = _bounded(tasks_offset, "tasks_offset", 0, 10**9)
        conn = self._conn()
        try:
            info = run_info(conn=conn, ref=run_id, home=self.home)
        except RunNotFound as exc:
            raise Refused(str(exc)) from None
        finally:
            conn.close()
        tasks = info["tasks"]
        page = tasks[tasks_offset:tasks_offset + tasks_limit]
        for t in page:
            t["started_at"], t["finished_at"] = iso_utc(t["started_at"]), iso_utc(
                t["finished_at"])
            t["stderr_tail"] = _cut(t["stderr_tail"])
        info["started_at"], info["finished_at"] = iso_utc(info["started_at"]), iso_utc(
            info["finished_at"])
        info.update(tasks=page, tasks_total=len(tasks), tasks_offset=tasks_offset,
                    tasks_next_offset=tasks_offset + len(page)
                    if tasks_offset + len(page) < len(tasks) else None)
        return info

    def get_task_logs(self, run_id, task, stream="stderr", tail_lines=200, attempt=None):
        from ottolytics.core.paths import LogRefused
        from ottolytics.manage.runinfo import RunNotFound, task_output
        if stream not in ("stdout", "stderr"):
            raise Refused(f"stream={stream!r}: use 'stdout' or 'stderr'")
        tail_lines = _bounded(tail_lines, "tail_lines", 1, MAX_LOG_LINES)
        if attempt is not None:
            attempt = _bounded(attempt, "attempt", 1, 1000)
        conn = self._conn()
        try:
            out = task_output(ref=run_id, task=task, stream=stream, attempt=attempt,
                              conn=conn, home=self.home, max_bytes=4 * MAX_LOG_BYTES)
        except RunNotFound as exc:  # and TaskNotFound
            raise Refused(str(exc)) from None
        except LogRefused as exc:
            raise Refused(f"{exc}; only regular files inside the run's own directory "
                          "(ottolytics/runs/<run id> beside the store, for runs "
                          "ottolytics recorded) are read") from None
        finally:
            conn.close()
        result, text = out, out.pop("text")
        if result["source"] is None:
            result.update(text="", lines=0, note="no output was kept for this "
                          "task: no log file at its path and nothing in the store")
            return result
        lines = text.splitlines()
        kept = lines[-tail_lines:]
        body = "\n".join(kept)
        cut_lines = len(lines) - len(kept)
        if len(body.encode()) > MAX_LOG_BYTES:
            raw = body.encode()[-MAX_LOG_BYTES:].decode("utf-8", "replace")
            cut_lines += body.count("\n") - raw.count("\n")
            body = raw
        if cut_lines:
            body = f"[... {cut_lines:,} earlier lines cut ...]\n" + body
        result.update(text=body, lines=len(lines),
                      lines_shown=len(lines) - cut_lines)
        return result

    def task_stats(self, task, since="30d", project=None):
        from ottolytics.analyze.stats import task_summary
        _no_nul(task=task, project=project)
        after = _since(since)
        summary = task_summary(self._h().with_filters(
            since=after, project=[project] if project else None), task)
        if not summary["attempts"]:
            known = summary["other_tasks"]
            raise Refused(f"task={task!r}: no runs since {since!r}"
                          + (f" in project {project!r}" if project else "")
                          + (f"; tasks in that period include {', '.join(known)}" if known
                             else "; nothing ran in that period"))
        return {"task": task, "project": project, "since": since, **summary,
                "last_run": _time(summary["last_run"])}

    def failure_groups(self, since="7d", limit=10, offset=0, project=None):
        limit = _bounded(limit, "limit", 1, MAX_LIMIT)
        offset = _bounded(offset, "offset", 0, 10**9)
        _no_nul(project=project)
        after = _since(since)
        h = self._h().with_filters(since=after, project=[project] if project else None)
        groups = h.failure_groups()
        page = groups.iloc[offset:offset + limit]
        items = [{"signature": r.signature, "count": int(r.count), "tasks": r.tasks,
                  "projects": r.projects, "first_seen": _time(r.first_seen),
                  "last_seen": _time(r.last_seen), "last_run_id": r.last_run_id,
                  "exit_codes": [int(c) for c in str(r.exit_codes).split(",") if c.strip()],
                  "message": _cut(r.message, 1500)}
                 for r in page.itertuples()]
        more = offset + len(items) < len(groups)
        return {"since": since, "total": len(groups), "offset": offset, "limit": limit,
                "groups": items, "next_offset": offset + len(items) if more else None}


def _no_nul(**names):
    """Refuse a name with a NUL character: no task, project or run id holds one."""
    from ottolytics.core.values import no_nul
    for arg, value in names.items():
        try:
            no_nul(arg, value)
        except ValueError as exc:
            raise Refused(str(exc)) from None


def _time(value):
    """A timestamp from a frame as the one JSON time format (formatting.iso_utc,
    ``…Z``); None for a missing one."""
    import pandas as pd
    if value is None or pd.isna(value):
        return None
    return iso_utc(pd.Timestamp(value).to_pydatetime())


def build_server(db=None, tools=None):
    """The MCP server with its five tools bound to the store at *db* (through
    *tools*, a HistoryTools, when given; its caller closes it)."""
    from typing import Annotated

    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import Field

    tools = tools or HistoryTools(db)
    server = MCPServer("ottolytics", instructions=INSTRUCTIONS)

    def call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (errors.Refused, StoreError, errors.Busy) as exc:
            # (Busy: another process held a lock, such as the mirror's first copy)
            raise ToolError(str(exc)) from None

    Since = Annotated[str | None, Field(description="only runs started since then: '7d', "
                                                    "'12h' (ago; a unit is needed), an ISO "
                                                    "date or time, or unix seconds such as "
                                                    "'1795000000'")]

    @server.tool(description="Runs, newest first, paged: run id, project, status, start, "
                 "end, duration and task counts. Use next_offset for the next page.")
    def list_execution_history(
            limit: Annotated[int, Field(description="runs per page, 1-200")] = 10,
            offset: Annotated[int, Field(description="runs to skip (paging)")] = 0,
            project: Annotated[str | None, Field(description="only this project")] = None,
            task: Annotated[str | None, Field(description="only runs that ran this task")] = None,
            status: Annotated[str | None, Field(description="running, success, failed or "
                                                           "interrupted")] = None,
            since: Since = None) -> dict:
        return call(tools.list_execution_history, limit, offset, project, task, status, since)

    @server.tool(description="One run: metadata, parameters, and each task attempt with "
                 "status, duration, exit code, and the paths of its script, stdout and "
                 "stderr; failed tasks carry their stderr tail. run_id may be 'latest', a "
                 "unique prefix, or otto's unix timestamp.")
    def get_run(run_id: str,
                tasks_limit: Annotated[int, Field(description="tasks per page, 1-1000")] = 100,
                tasks_offset: Annotated[int, Field(description="tasks to skip")] = 0) -> dict:
        return call(tools.get_run, run_id, tasks_limit, tasks_offset)

    @server.tool(description="A task's output: the last lines of its log file (or of the "
                 "output kept in the store). Long output is cut from the start, with a "
                 "marker saying how many lines were cut.")
    def get_task_logs(run_id: str, task: str,
                      stream: Annotated[str, Field(description="'stderr' or 'stdout'")] =
                      "stderr",
                      tail_lines: Annotated[int, Field(description="lines from the end, "
                                                                   "1-5000")] = 200,
                      attempt: Annotated[int | None, Field(description="which attempt "
                                                           "(default: the last)")] = None
                      ) -> dict:
        return call(tools.get_task_logs, run_id, task, stream, tail_lines, attempt)

    @server.tool(description="One task's reliability and speed since a time: runs, "
                 "attempts, successes, failures, success rate, p50 and p95 duration, and "
                 "its flip rate and flaky score over its last 20 runs.")
    def task_stats(task: str,
                   since: Annotated[str, Field(description="'30d', '12h' (ago), an ISO date, "
                                                           "or unix seconds")] = "30d",
                   project: Annotated[str | None, Field(description="only this project")]
                   = None) -> dict:
        return call(tools.task_stats, task, since, project)

    @server.tool(description="Recurring failures since a time, grouped by normalized "
                 "stderr signature, biggest first, paged: count, tasks, projects, first and "
                 "last seen, the last run, and a sample message.")
    def failure_groups(since: Annotated[str, Field(description="'7d', '12h', an ISO date, "
                                                               "or unix seconds")] = "7d",
                       limit: Annotated[int, Field(description="groups per page, 1-200")] = 10,
                       offset: Annotated[int, Field(description="groups to skip")] = 0,
                       project: Annotated[str | None, Field(description="only this project")]
                       = None) -> dict:
        return call(tools.failure_groups, since, limit, offset, project)

    return server


def serve(db=None):
    """Run the server over stdio until the client closes it."""
    with HistoryTools(db) as tools:
        build_server(db, tools).run("stdio")
