"""ottolytics mcp: a real MCP client session over stdio, on known data."""

import asyncio
import json
import os
import sys

import pytest
from known_history import RUNS, record

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

TOOLS = {"list_execution_history", "get_run", "get_task_logs", "task_stats", "failure_groups"}


def _session(db, calls):
    """Start `python -m ottolytics --db DB mcp`, initialize, run *calls(session)*."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "ottolytics", "--db", str(db), "mcp"],
                                   env={"OTTO_HOME": os.environ["OTTO_HOME"],
                                        "PYTHONPATH": os.pathsep.join(sys.path)})

    async def main():
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await calls(session)
    return asyncio.run(main())


def _data(result):
    """A tool result's JSON document (structured when offered, else its text)."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        doc = result.structured_content
        return doc.get("result", doc) if set(doc) == {"result"} else doc
    return json.loads(result.content[0].text)


def _error(result):
    assert result.is_error
    return result.content[0].text


@pytest.fixture
def known(db, home):
    record(db)
    # run007 is one of the failing runs (every fourth): give its test task a log file
    import sqlite3
    # where the read rule lets a Recorder run's log be read: its own ottolytics/runs/<uid>
    log = home / "ottolytics" / "runs" / "run007" / "test.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 501)) + "Error: boom\n")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET stderr_path = ? WHERE name = 'test' AND run_id = "
                 "(SELECT id FROM runs WHERE uid = 'run007')", (str(log),))
    conn.commit()
    conn.close()
    return db


def test_tools_are_listed_with_schemas_and_answer_from_the_history(known):
    async def calls(s):
        tools = (await s.list_tools()).tools
        out = {"tools": {t.name: t.input_schema for t in tools}}
        out["page1"] = _data(await s.call_tool("list_execution_history", {"limit": 5}))
        out["page2"] = _data(await s.call_tool("list_execution_history",
                                               {"limit": 5, "offset": 5}))
        out["failed"] = _data(await s.call_tool("list_execution_history",
                                                {"status": "failed", "limit": 200}))
        out["run"] = _data(await s.call_tool("get_run", {"run_id": "run007"}))
        out["latest"] = _data(await s.call_tool("get_run", {"run_id": "latest"}))
        out["logs"] = _data(await s.call_tool("get_task_logs", {
            "run_id": "run007", "task": "test", "tail_lines": 10}))
        out["tail"] = _data(await s.call_tool("get_task_logs", {
            "run_id": "run011", "task": "test"}))
        out["stats"] = _data(await s.call_tool("task_stats", {"task": "test", "since": ""}))
        out["groups"] = _data(await s.call_tool("failure_groups", {"since": ""}))
        return out
    r = _session(known, calls)
    assert set(r["tools"]) == TOOLS
    schema = r["tools"]["list_execution_history"]
    assert {"limit", "offset", "project", "task", "status", "since"} <= set(schema["properties"])
    assert r["tools"]["get_run"]["required"] == ["run_id"]

    page1, page2 = r["page1"], r["page2"]
    assert page1["total"] == RUNS and page1["next_offset"] == 5
    assert [x["run_id"] for x in page1["runs"]] == [f"run{i:03d}" for i in range(39, 34, -1)]
    assert [x["run_id"] for x in page2["runs"]] == [f"run{i:03d}" for i in range(34, 29, -1)]
    first = page1["runs"][0]
    assert first["project"] == "web" and first["status"] == "failed"
    assert first["tasks"] == 4 and first["task_counts"] == {"success": 3, "failed": 1}
    assert first["started_at"].endswith("Z") and first["duration_s"] > 0
    assert r["failed"]["total"] == RUNS // 4 and r["failed"]["next_offset"] is None

    run = r["run"]
    assert run["run_id"] == "run007" and run["order"] == ["lint", "build", "docs", "test"]
    test = next(t for t in run["tasks"] if t["task"] == "test")
    assert test["exit_code"] == 1 and "connection refused" in test["stderr_tail"]
    assert run["tasks_total"] == 4 and run["params"]["env"] == "ci"
    assert r["latest"]["run_id"] == "run039"

    logs = r["logs"]
    assert logs["source"] == "file" and logs["lines"] == 501 and logs["lines_shown"] == 10
    assert logs["text"].startswith("[... 491 earlier lines cut ...]")
    assert logs["text"].endswith("Error: boom")
    assert r["tail"]["source"].startswith("store") and "connection refused" in r["tail"]["text"]

    stats = r["stats"]
    assert stats["runs"] == RUNS and stats["attempts"] == RUNS + 1
    failures = RUNS // 4 + 1                  # every fourth run, and run 5's first attempt
    assert stats["failures"] == failures and stats["successes"] == RUNS + 1 - failures
    assert stats["success_rate"] == pytest.approx((RUNS + 1 - failures) / (RUNS + 1))
    assert 0 < stats["flip_rate"] <= 1 and stats["p95_duration_s"] >= stats["p50_duration_s"]

    groups = r["groups"]
    assert groups["groups"][0]["count"] == RUNS // 4
    assert "connection refused" in groups["groups"][0]["message"]


def test_bad_arguments_are_clear_errors_not_crashes(known, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    import sqlite3
    link = tmp_path / "link.log"
    link.symlink_to(outside)
    conn = sqlite3.connect(known)
    conn.execute("UPDATE tasks SET stdout_path = ? WHERE name = 'lint' AND run_id = "
                 "(SELECT id FROM runs WHERE uid = 'run001')", (str(link),))
    conn.commit()
    conn.close()

    async def calls(s):
        out = {}
        for key, name, args in [
            ("unknown_run", "get_run", {"run_id": "nope-nope"}),
            ("negative", "list_execution_history", {"limit": -1}),
            ("huge", "list_execution_history", {"limit": 10_000}),
            ("status", "list_execution_history", {"status": "exploded"}),
            ("since", "failure_groups", {"since": "last tuesday"}),
            ("path", "get_task_logs", {"run_id": "run001", "task": "../../../etc/passwd"}),
            ("link", "get_task_logs", {"run_id": "run001", "task": "lint",
                                       "stream": "stdout"}),
            ("stream", "get_task_logs", {"run_id": "run001", "task": "lint",
                                         "stream": "/etc/passwd"}),
            ("task", "task_stats", {"task": "no-such-task", "since": ""}),
            ("type", "get_run", {"run_id": 7}),
            ("missing", "get_run", {}),
        ]:
            out[key] = await s.call_tool(name, args)
        out["after"] = _data(await s.call_tool("list_execution_history", {"limit": 1}))
        return out
    r = _session(known, calls)
    assert "nope-nope: no such run" in _error(r["unknown_run"])
    assert "limit=-1" in _error(r["negative"]) and "1 to 200" in _error(r["negative"])
    assert "limit=10000" in _error(r["huge"])
    assert "status='exploded'" in _error(r["status"])
    assert "since='last tuesday'" in _error(r["since"])
    assert "has no such task" in _error(r["path"]) and "lint" in _error(r["path"])
    link_error = _error(r["link"])
    assert "not read" in link_error and "top secret" not in link_error
    assert "stream='/etc/passwd'" in _error(r["stream"])
    assert "no runs since" in _error(r["task"]) and "build" in _error(r["task"])
    assert r["type"].is_error and r["missing"].is_error
    assert r["after"]["runs"][0]["run_id"] == "run039"   # the server is still serving


def test_read_only_and_no_heavy_imports_at_start(known):
    """Listing runs must not load DuckDB or pandas, and nothing is written."""
    from ottolytics.mcp.server import HistoryTools
    before = os.stat(known).st_mtime_ns, os.path.getsize(known)
    code = ("import sys\nfrom ottolytics.mcp.server import HistoryTools, build_server\n"
            f"t = HistoryTools({str(known)!r}); build_server({str(known)!r})\n"
            "t.list_execution_history(limit=3); t.get_run('latest')\n"
            "t.get_task_logs('run007', 'test')\n"
            "print([m for m in ('duckdb', 'pandas') if m in sys.modules])")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
    HistoryTools(known).task_stats("test", since="")
    assert (os.stat(known).st_mtime_ns, os.path.getsize(known)) == before
    assert not os.path.exists(str(known) + "-wal") or os.path.getsize(str(known) + "-wal") == 0


def test_since_bare_number_is_unix_seconds_and_nonsense_is_refused(known):
    from known_history import T0
    from ottolytics.mcp.server import HistoryTools, Refused
    t = HistoryTools(known)
    cut = int(T0 + 30 * 3600 - 1)
    doc = t.list_execution_history(limit=100, since=str(cut))
    assert doc["total"] == 10 and doc["runs"][0]["run_id"] == "run039"
    assert t.list_execution_history(limit=100, since="2000000000")["total"] == 0
    for bad in ("inf", "-inf", "nan", "-5", "1e300d"):
        for call in (lambda: t.list_execution_history(since=bad),
                     lambda: t.task_stats("test", since=bad),
                     lambda: t.failure_groups(since=bad)):
            with pytest.raises(Refused) as exc:
                call()
            msg = str(exc.value)
            assert "since=" in msg and "SELECT" not in msg and ">=" not in msg, msg


def test_times_are_iso_z_and_exit_codes_ints_in_every_tool(known):
    import re
    from ottolytics.mcp.server import HistoryTools
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    t = HistoryTools(known)
    stats = t.task_stats("test", since="")
    assert iso.fullmatch(stats["last_run"]), stats["last_run"]
    groups = t.failure_groups(since="")["groups"]
    assert groups
    for g in groups:
        assert iso.fullmatch(g["first_seen"]) and iso.fullmatch(g["last_seen"]), g
        assert isinstance(g["exit_codes"], list) and g["exit_codes"]
        assert all(type(c) is int for c in g["exit_codes"])
    assert sorted(c for g in groups for c in g["exit_codes"]) == [1, 2]
    run = t.get_run("run007")
    assert iso.fullmatch(run["started_at"]) and iso.fullmatch(run["finished_at"])
    assert all(iso.fullmatch(x["started_at"]) for x in run["tasks"])
    page = t.list_execution_history(limit=2)["runs"]
    assert all(iso.fullmatch(x["started_at"]) for x in page)
    json.dumps([stats, groups, run, page])  # all plain JSON


def test_failure_groups_include_failures_without_stderr(known):
    from ottolytics.mcp.server import HistoryTools
    from ottolytics.record.recorder import Recorder
    with Recorder(known).run(project="web", uid="quiet") as run:
        run.task("deploy").start().finish(4)
    groups = HistoryTools(known).failure_groups(since="")["groups"]
    quiet = [g for g in groups if g["tasks"] == "deploy"]
    assert len(quiet) == 1 and quiet[0]["message"] == "exit code 4, no stderr kept"
    assert quiet[0]["exit_codes"] == [4] and quiet[0]["last_run_id"] == "quiet"


def test_tools_read_a_store_whose_path_has_uri_characters(home, tmp_path):
    """A store in a directory named with '#' and '?' is read through the store's own
    read-only opening: the path is URI-escaped (not cut at '#'/'?', which read a
    different, empty file: "no such table: runs") and the connection is tracked
    under the store's real path while open (store/inprocess)."""
    from ottolytics.mcp.server import HistoryTools
    from ottolytics.store import inprocess
    weird = tmp_path / "we#ird?dir" / "ottolytics.db"
    weird.parent.mkdir()
    record(weird)
    with HistoryTools(weird) as tools:
        page = tools.list_execution_history(limit=3)
        assert page["runs"] and page["runs"][0]["run_id"].startswith("run")
        conn = tools._conn()
        try:
            assert inprocess.is_open(weird)
        finally:
            conn.close()
        assert not inprocess.is_open(weird)
    assert sorted(os.listdir(weird.parent)) == ["ottolytics.db"]


def test_a_nul_in_any_argument_is_a_one_line_refusal(known):
    """A new user's report: a NUL in a run id, task or project crashed the tools
    (a bare 'Error executing tool', a traceback in the server's log), and
    open(project='a\\0b') raised DuckDB's parser error."""
    from ottolytics.mcp.server import HistoryTools, Refused
    t = HistoryTools(known)
    for call in (lambda: t.get_run("x\x00y"), lambda: t.get_task_logs("run\x00", "lint"),
                 lambda: t.task_stats("bu\x00ild", since=""),
                 lambda: t.task_stats("test", project="a\x00", since=""),
                 lambda: t.failure_groups(project="a\x00", since="")):
        with pytest.raises(Refused) as exc:
            call()
        assert "\n" not in str(exc.value)
    import ottolytics
    with pytest.raises(ValueError, match="NUL"):
        ottolytics.open(known, project="a\x00b")
