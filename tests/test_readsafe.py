"""Log paths in store rows are untrusted (issue 13): every reader of log files (the
MCP server's get_task_logs, ``info``, ``History.logs()``, ``History.grep()`` and
``ottolytics logs``) reads a file only inside its run's own tree, only a regular
file, and never through a symlink out of that tree. Each attack below was served
before the read rule existed."""

import json
import os
import sqlite3
import sys
import time
import warnings

import pytest

import ottolytics
from conftest import run_cli
from otto_tree import build, synced
from ottolytics.mcp.server import HistoryTools, Refused
from ottolytics.core.paths import task_path_from_stored
from ottolytics.manage.runinfo import run_info

SECRET = "TOP-SECRET-b7c1"


@pytest.fixture
def shim_run(db, home, tmp_path):
    """A run recorded by `ottolytics exec` (logs under OTTO_HOME/ottolytics/runs), and
    a secret file outside OTTO_HOME."""
    out = run_cli("--db", db, "exec", "--project", "p", "--task", "say", "--", sys.executable,
                  "-c", "import sys; print('hello'); print('oops', file=sys.stderr)")
    assert out.returncode == 0, out.stderr
    (secret := tmp_path / "secret.txt").write_text(f"{SECRET}\n")
    uid = q1(db, "SELECT uid FROM runs")
    return uid, secret


def q1(db, sql, *args):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchone()[0]
    finally:
        conn.close()


def update(db, sql, *args):
    conn = sqlite3.connect(db)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def _stderr_dir(db, home):
    stored = q1(db, "SELECT stderr_path FROM tasks")
    run_dir = q1(db, "SELECT run_dir FROM runs")
    return os.path.dirname(task_path_from_stored(stored, run_dir, str(home)))


def attack(kind, db, home, secret):
    """Make the store's one task's stderr_path name something it must not read."""
    if kind == "absolute file outside":
        update(db, "UPDATE tasks SET stderr_path = ?", str(secret))
    elif kind == "/proc/self/environ":
        update(db, "UPDATE tasks SET stderr_path = '/proc/self/environ'")
    elif kind == "../ traversal":
        update(db, "UPDATE tasks SET stderr_path = ?", "../" * 40 + str(secret).lstrip("/"))
    elif kind == "run_dir=/etc + passwd":
        update(db, "UPDATE runs SET run_dir = '/etc'")
        update(db, "UPDATE tasks SET stderr_path = 'passwd'")
    elif kind == "task directory symlinked outside":
        task_dir = _stderr_dir(db, home)
        outside = secret.parent / "outside-task"
        outside.mkdir()
        (outside / "stderr.log").write_text(f"{SECRET}\n")
        (outside / "stdout.log").write_text(f"{SECRET}\n")
        for f in os.listdir(task_dir):
            os.unlink(os.path.join(task_dir, f))
        os.rmdir(task_dir)
        os.symlink(outside, task_dir)
    elif kind == "log file symlinked outside":
        log = os.path.join(_stderr_dir(db, home), "stderr.log")
        os.unlink(log)
        os.symlink(secret, log)
    elif kind == "FIFO":
        log = os.path.join(_stderr_dir(db, home), "stderr.log")
        os.unlink(log)
        os.mkfifo(log)
    else:
        raise AssertionError(kind)


BOTH_STREAMS = {"run_dir=/etc + passwd", "task directory symlinked outside"}
ATTACKS = ["absolute file outside", "/proc/self/environ", "../ traversal",
           "run_dir=/etc + passwd", "task directory symlinked outside",
           "log file symlinked outside", "FIFO"]


def bounded(fn, *args, seconds=10, **kwargs):
    """fn(*args, **kwargs) in a daemon thread: a read that blocks (a FIFO) fails the
    test after *seconds* instead of hanging the suite."""
    import threading
    box = {}

    def work():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} blocked for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _no_secret(text):
    return SECRET not in text and "root:x:0:0" not in text


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("OTTOLYTICS_TEST_SECRET", SECRET)  # what /proc/self/environ would leak


@pytest.mark.parametrize("kind", ATTACKS)
def test_mcp_get_task_logs_refuses(kind, shim_run, db, home, secret_env):
    uid, secret = shim_run
    tools = HistoryTools(db)
    assert tools.get_task_logs(uid, "say")["text"] == "oops"   # the real log is served
    attack(kind, db, home, secret)
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        bounded(tools.get_task_logs, uid, "say")
    assert time.monotonic() - started < 5
    message = str(refused.value)
    assert "not read" in message and "\n" not in message and _no_secret(message)
    if kind not in BOTH_STREAMS:   # the other stream is still served
        assert tools.get_task_logs(uid, "say", stream="stdout")["text"] == "hello"
    else:
        with pytest.raises(Refused, match="not read"):
            tools.get_task_logs(uid, "say", stream="stdout")


@pytest.mark.parametrize("kind", ATTACKS)
def test_history_logs_grep_and_info_refuse(kind, shim_run, db, home, secret_env):
    from ottolytics.analyze.analytics import LogWarning
    uid, secret = shim_run
    attack(kind, db, home, secret)
    h = ottolytics.open(db)
    with pytest.warns(LogWarning, match="not read"):
        logs = bounded(h.logs, uid)
    assert _no_secret("\n".join(logs["text"]))
    assert logs.attrs["refused"] and "not read" in logs.attrs["refused"][0]
    if kind not in BOTH_STREAMS:
        assert ["say", "stdout", "hello", "file"] in \
            logs[["task", "stream", "text", "source"]].values.tolist()
    with pytest.warns(LogWarning):
        found = bounded(h.grep, "SECRET|root:")
    assert found.empty and found.attrs["refused"]
    task = bounded(run_info, db, uid)["tasks"][0]
    assert "stderr" in task["refused"]
    assert ("stdout" in task["refused"]) == (kind in BOTH_STREAMS)


@pytest.mark.parametrize("kind", ["absolute file outside", "FIFO", "../ traversal"])
def test_cli_logs_refuses_with_one_line(kind, shim_run, db, home, cli):
    uid, secret = shim_run
    attack(kind, db, home, secret)
    out = cli("--db", db, "logs", uid, "say", "--stream", "stderr", timeout=20)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1 and "not read" in err
    assert _no_secret(out.stdout.decode() + err)
    follow = cli("--db", db, "logs", uid, "say", "--stream", "stderr", "-f", timeout=20)
    assert follow.returncode == 1 and "not read" in follow.stderr.decode()
    assert _no_secret(follow.stdout.decode())
    info = cli("--db", db, "info", uid).stdout.decode()
    assert "not read:" in info


def test_mcp_server_answers_a_fifo_promptly_with_an_error(shim_run, db, home):
    from test_mcp_server import _session
    uid, secret = shim_run
    attack("FIFO", db, home, secret)

    async def calls(s):
        import asyncio
        bad = await asyncio.wait_for(s.call_tool("get_task_logs", {"run_id": uid,
                                                                   "task": "say"}), 15)
        good = await asyncio.wait_for(s.call_tool("get_task_logs", {
            "run_id": uid, "task": "say", "stream": "stdout"}), 15)
        return bad, good
    bad, good = _session(db, calls)
    assert bad.is_error and "not a regular file" in bad.content[0].text
    assert not good.is_error


def test_otto_runs_read_only_inside_their_own_run_directory(home, db, tmp_path):
    runs = build(home, [3, 1], failed={1})
    synced(home, db)
    old, new = runs[0].name, runs[1].name
    tools = HistoryTools(db)
    assert tools.get_task_logs(new, "build")["text"] == "boom"   # its own log: read
    h = ottolytics.open(db)
    assert "boom" in h.logs(new, "build")["text"].tolist()
    # Another run's log, inside OTTO_HOME but outside this run's directory.
    update(db, "UPDATE tasks SET stderr_path = ? WHERE name = 'build' AND run_id = "
           "(SELECT id FROM runs WHERE uid LIKE ?)", f"../{old}/tasks/lint/stdout.log",
           f"otto-{new}-%")
    with pytest.raises(Refused, match="outside the run's directory"):
        tools.get_task_logs(new, "build")
    # A run_dir that climbs out of OTTO_HOME, or names OTTO_HOME itself.
    for run_dir in (f"../{tmp_path.name}", "/etc", ".", ""):
        update(db, "UPDATE runs SET run_dir = ? WHERE uid LIKE ?", run_dir, f"otto-{old}-%")
        with pytest.raises(Refused, match="not read"):
            tools.get_task_logs(old, "lint", stream="stdout")
    # A project directory that is a symlink leading out of OTTO_HOME.
    outside = tmp_path / "elsewhere" / old / "tasks" / "lint"
    outside.mkdir(parents=True)
    (outside / "stdout.log").write_text(SECRET)
    os.symlink(tmp_path / "elsewhere", home / "evil")
    update(db, "UPDATE runs SET run_dir = ? WHERE uid LIKE ?", f"evil/{old}", f"otto-{old}-%")
    with pytest.raises(Refused, match="not read") as refused:
        tools.get_task_logs(old, "lint", stream="stdout")
    assert SECRET not in str(refused.value)


def test_open_log_rule_directly(tmp_path):
    from ottolytics.core.paths import LogRefused, open_log
    home = tmp_path / "h"
    (home / "runs" / "r1").mkdir(parents=True)
    log = home / "runs" / "r1" / "out.log"
    log.write_text("fine\n")
    tree = str(home / "runs" / "r1")
    with open_log(str(log), tree, str(home)) as f:
        assert f.read() == b"fine\n"
    # A symlink that stays inside the tree is followed to the real file.
    (home / "runs" / "r1" / "alias.log").symlink_to("out.log")
    with open_log(str(home / "runs" / "r1" / "alias.log"), tree, str(home)) as f:
        assert f.read() == b"fine\n"
    for bad, why in [(str(home / "runs"), "outside"), (str(home / "runs" / "r1"), "regular"),
                     ("/dev/zero", "outside"), ("", "no path"), ("a\0b", "NUL")]:
        with pytest.raises(LogRefused, match=why):
            open_log(bad, tree, str(home))
    with pytest.raises(LogRefused, match="filesystem root"):   # a store kept in /
        open_log("/etc/passwd", "/", "/")
    with pytest.raises(LogRefused, match="no directory"):
        open_log(str(log), None, str(home))
    with pytest.raises(FileNotFoundError):
        open_log(str(home / "runs" / "r1" / "gone.log"), tree, str(home))


def test_sql_and_python_resolve_stored_paths_alike(db, home):
    """history.py's SQL and paths.task_path_from_stored give the same string for every
    shape of stored path (one rule; the README's 'Where things live')."""
    rec = ottolytics.Recorder(db)
    cases = [("ottolytics/runs/a", "tasks/x/stdout.log"), ("proj/123", "../x.log"),
             ("/abs/run", "tasks/y.log"), ("/abs/run/", "z.log"), (None, "logs/q.log"),
             ("", "logs/e.log"), ("r", "/abs/file.log"), ("r", None)]
    for i, (run_dir, path) in enumerate(cases):
        with rec.run(project="p", uid=f"case{i}", run_dir=None) as run:
            run.task("t", stdout_path=path).start().finish(0)
        update(db, "UPDATE runs SET run_dir = ? WHERE uid = ?", run_dir, f"case{i}")
        update(db, "UPDATE tasks SET stdout_path = ? WHERE run_id = (SELECT id FROM runs "
               "WHERE uid = ?)", path, f"case{i}")
    rec.close()
    tasks = ottolytics.open(db).tasks().set_index("run_id")
    for i, (run_dir, path) in enumerate(cases):
        got = tasks.loc[f"case{i}", "stdout_path"]
        want = task_path_from_stored(path, run_dir, str(home))
        assert (got if isinstance(got, str) else None) == want, (run_dir, path)
        info = run_info(db, f"case{i}")["tasks"][0]["stdout_path"]
        assert info == want


def test_logs_and_failures_without_logs_or_tails(db):
    """pandas 3 reads missing strings as NaN, which is true in an `if`: a run
    without log files and a failure without a stderr tail must still work."""
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="bare-run") as run:
        run.task("quiet").start(at=100).finish(0, at=101)
        run.task("crash").start(at=101).finish(3, at=102)   # failed, no stderr tail
    with rec.run(project="p", uid="tail-run") as run:
        run.task("t").start(at=200).finish(1, at=201, stderr_tail="x\nValueError: bad\n")
    rec.close()
    h = ottolytics.open(db)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing refused, nothing to warn about
        bare = h.logs("bare-run")
    assert bare.empty and list(bare.columns) == ["task", "attempt", "stream", "seq", "at",
                                                 "text", "source"]
    tail = h.logs("tail-run")
    assert tail[["task", "stream", "text", "source"]].values.tolist() == [
        ["t", "stderr", "x", "stderr tail"], ["t", "stderr", "ValueError: bad", "stderr tail"]]
    failures = h.failures().set_index("run_id")
    assert failures.loc["bare-run", "message"] == ""
    assert failures.loc["bare-run", "signature"] is None or \
        failures["signature"].isna()["bare-run"]
    assert failures.loc["tail-run", "message"] == "ValueError: bad"
    groups = h.failure_groups().set_index("last_run_id")   # the tail-less one is grouped too
    assert len(groups) == 2 and groups.loc["bare-run", "message"] == "exit code 3, no stderr kept"
    assert h.grep("nothing-matches-this").empty


def test_grep_searches_stored_stderr_tails_of_the_sample(tmp_path):
    import shutil
    src = os.path.join(os.path.dirname(__file__), "..", "data", "sample", "ottolytics.db")
    copy = tmp_path / "sample.db"
    shutil.copy(src, copy)
    found = ottolytics.open(copy).grep("ImportError")
    assert len(found) >= 11 and set(found["source"]) == {"stderr tail"}
    assert found["text"].str.contains("ImportError").all()
    assert found["path"].isna().all()
    out = run_cli("--db", copy, "grep", "ImportError", "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and len(doc["matches"]) == len(found)
    none = run_cli("--db", copy, "grep", "no-such-text-anywhere")
    assert none.returncode == 1 and none.stdout == b""


def test_python_api_takes_latest_and_unique_prefixes(db):
    from known_history import record
    from ottolytics.manage.runinfo import RunNotFound
    record(db)
    h = ottolytics.open(db)
    assert h.resolve("latest") == "run039" and h.resolve("run007") == "run007"
    assert h.critical_path("latest")["run_id"].iloc[0] == "run039"
    assert h.critical_path("run039")["task"].tolist() == \
        h.critical_path("latest")["task"].tolist()
    assert len(h.compare("latest", "run038")) == 4
    assert h.logs("run038", "test").empty  # no files, no tail: it passed
    assert set(h.logs("latest", "test")["source"]) == {"stderr tail"}  # run039 failed
    with pytest.raises(RunNotFound, match="ambiguous, matches 10 runs"):
        h.critical_path("run03")
    with pytest.raises(RunNotFound, match="no such run"):
        h.logs("nope-nope")
    # 'latest' honours the History's filters; ids are looked up whatever the time filter.
    assert h.with_filters(status=["failed"]).resolve("latest") == "run039"
    assert h.with_filters(status=["success"]).resolve("latest") == "run038"
    assert h.with_filters(since=2_000_000_000).resolve("run007") == "run007"


def test_short_prefix_is_ambiguous_not_unknown(db, cli):
    from ottolytics.manage.runinfo import RunNotFound
    rec = ottolytics.Recorder(db)
    for i in range(16):
        with rec.run(project="p", uid=f"06h{i:02d}zzzzzzzzzzz"):
            pass
    with rec.run(project="p", uid="q1x2-only"):
        pass
    rec.close()
    out = cli("--db", db, "info", "06h")
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1
    assert "ambiguous, matches 16 runs" in err and "06h00zzzzzzzzzzz" in err
    assert "at least 4 characters" in err
    with pytest.raises(RunNotFound, match="too short"):
        run_info(db, "q1x")
    assert run_info(db, "q1x2")["run_id"] == "q1x2-only"
    assert ottolytics.open(db).resolve("q1x2") == "q1x2-only"
    with pytest.raises(RunNotFound, match="ambiguous, matches 16 runs"):
        ottolytics.open(db).logs("06h")


def test_cli_logs_prints_and_follows(shim_run, db, cli):
    uid, _secret = shim_run
    whole = cli("--db", db, "logs", uid)
    assert whole.returncode == 0
    assert whole.stdout.decode().splitlines() == [
        "== say stdout (file) ==", "hello", "== say stderr (file) ==", "oops"]
    one = cli("--db", db, "logs", uid[:6], "say", "--stream", "stdout")
    assert one.stdout == b"hello\n"
    doc = json.loads(cli("--db", db, "logs", "latest", "say", "--json").stdout)
    assert doc["run_id"] == uid and [x["text"] for x in doc["lines"]] == ["hello", "oops"]
    missing = cli("--db", db, "logs", uid, "nope")
    assert missing.returncode == 1 and b"has no task 'nope'" in missing.stderr
    done = cli("--db", db, "logs", uid, "say", "-f", timeout=20)   # ended: prints, exits
    assert done.returncode == 0 and done.stdout.decode().splitlines() == ["hello", "oops"]


def test_cli_logs_follow_prints_what_a_running_task_writes(db, tmp_path):
    import subprocess
    script = tmp_path / "slow.py"
    script.write_text("import sys, time\nfor i in range(3):\n    print('tick', i, flush=True)\n"
                      "    time.sleep(0.4)\n")
    rec = subprocess.Popen([sys.executable, "-m", "ottolytics", "--db", str(db), "exec",
                            "--project", "p", "--task", "slow", "--", sys.executable,
                            str(script)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        if os.path.exists(db) and q_count(db) > 0:
            break
        time.sleep(0.05)
    out = run_cli("--db", db, "logs", "latest", "slow", "--stream", "stdout", "-f", timeout=30)
    rec.wait(10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["tick 0", "tick 1", "tick 2"]


def q_count(db):
    try:
        return q1(db, "SELECT count(*) FROM tasks")
    except sqlite3.Error:
        return 0


def test_terminal_output_escapes_control_characters():
    from ottolytics.cli.logs import escape
    hostile = "ok\x1b]0;pwned\x07\x00\x9b2J\tend"
    assert escape(hostile, True) == "ok\\x1b]0;pwned\\x07\\x00\\x9b2J\tend"
    assert escape(hostile, False) == hostile


def test_parquet_dataset_resolves_refs_and_greps_tails_without_reading_files(shim_run, db,
                                                                             tmp_path):
    uid, secret = shim_run
    update(db, "UPDATE tasks SET stderr_path = ?", str(secret))
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="tailed-run") as run:
        run.task("t").start().finish(1, stderr_tail="ImportError: no module named x\n")
    rec.close()
    ottolytics.open(db).to_parquet(tmp_path / "ds")
    p = ottolytics.open(tmp_path / "ds")
    assert p.resolve("latest") == "tailed-run" and p.resolve(uid[:8]) == uid
    found = p.grep("ImportError|SECRET")
    assert found[["run_id", "text", "source"]].values.tolist() == [
        ["tailed-run", "ImportError: no module named x", "stderr tail"]]
    # The dataset's paths are another machine's: no file is read, the stored tail is.
    assert p.logs(uid)[["text", "source"]].values.tolist() == [["oops", "stderr tail"]]


# -- review item 3: a row reads only its own run's directory --------------------------

def _recorded_with_paths(db, uid, **paths):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid=uid) as run:
        run.task("t").start().finish(0, **paths)
    rec.close()


def test_a_recorder_row_reads_no_file_beside_the_store(tmp_path):
    """With --db /x/runs.db a Recorder row's stderr_path naming /x/.ssh/id_rsa, or the
    store itself, was served: a non-otto row reads only below
    <store dir>/ottolytics/runs/<its own uid>, where the shim keeps its logs."""
    fh = tmp_path / "fh"
    (fh / ".ssh").mkdir(parents=True)
    (fh / ".ssh" / "id_rsa").write_text(f"{SECRET}\n")
    db = fh / "runs.db"
    _recorded_with_paths(db, "key-run", stderr_path=str(fh / ".ssh" / "id_rsa"))
    _recorded_with_paths(db, "db-run", stderr_path=str(db), stdout_path=str(db) + "-wal")
    tools = HistoryTools(db)
    for uid in ("key-run", "db-run"):
        with pytest.raises(Refused, match="not read") as refused:
            tools.get_task_logs(uid, "t")
        assert _no_secret(str(refused.value))
        out = run_cli("--db", db, "logs", uid, "t", "--stream", "stderr")
        assert out.returncode == 1 and b"not read" in out.stderr
        assert SECRET.encode() not in out.stdout and b"SQLite format" not in out.stdout


def test_a_recorder_row_reads_neither_another_runs_directory_nor_hidden_ones(db, home):
    own = home / "ottolytics" / "runs" / "mine" / "tasks" / "t"
    other = home / "ottolytics" / "runs" / "theirs" / "tasks" / "t"
    for d in (own, other, own / ".ssh"):
        d.mkdir(parents=True, exist_ok=True)
    (own / "stdout.log").write_text("own output\n")
    (other / "stdout.log").write_text(f"{SECRET}\n")
    (own / ".ssh" / "id_rsa").write_text(f"{SECRET}\n")
    _recorded_with_paths(db, "mine", stdout_path=str(own / "stdout.log"),
                         stderr_path=str(other / "stdout.log"))
    tools = HistoryTools(db)
    assert tools.get_task_logs("mine", "t", stream="stdout")["text"] == "own output"
    with pytest.raises(Refused, match="outside the run's directory"):
        tools.get_task_logs("mine", "t")
    update(db, "UPDATE tasks SET stderr_path = ?", str(own / ".ssh" / "id_rsa"))
    with pytest.raises(Refused, match="hidden"):
        tools.get_task_logs("mine", "t")


@pytest.mark.parametrize("run_dir", ["ottolytics", "PROJECT", "PROJECT/1795000000x",
                                     "PROJECT/OTHER"])
def test_an_otto_row_without_the_otto_run_shape_reads_nothing(run_dir, home, db):
    """An otto row whose run_dir is 'ottolytics' or a project directory read other
    runs' files; only <project>-<hash8>/<unix-ts> of its own uid gets a tree."""
    runs = build(home, [3, 1], failed={1})
    synced(home, db)
    old, new = runs[0], runs[1]
    run_dir = run_dir.replace("PROJECT", old.parent.name).replace("OTHER", old.name)
    update(db, "UPDATE runs SET run_dir = ? WHERE uid LIKE ?", run_dir, f"otto-{new.name}-%")
    update(db, "UPDATE tasks SET stderr_path = ? WHERE name = 'build' AND run_id = "
           "(SELECT id FROM runs WHERE uid LIKE ?)",
           f"{old.name}/tasks/lint/stdout.log" if "/" not in run_dir else
           "tasks/lint/stdout.log", f"otto-{new.name}-%")
    tools = HistoryTools(db)
    with pytest.raises(Refused, match="not read"):
        tools.get_task_logs(new.name, "build")


def test_log_tree_rule():
    from ottolytics.core.paths import log_tree
    h = "/h"
    assert log_tree("otto", "web-0123abcd/1795000000", h, "otto-1795000000-0123abcd") == \
        "/h/web-0123abcd/1795000000"
    for run_dir, uid in [("ottolytics", "otto-1-0123abcd"), ("web-0123abcd", "x"),
                         ("web-0123abcd/1795000000", "otto-1795000001-0123abcd"),
                         ("web/1795000000", "otto-1795000000-0123abcd"),
                         ("web-0123abcd/../x-0123abcd/1", "otto-1-0123abcd")]:
        assert log_tree("otto", run_dir, h, uid) is None, run_dir
    # absolute: an OTTO_HOME synced into a store kept elsewhere (review item 9)
    assert log_tree("otto", "/o/home/web-0123abcd/1795000000", h, "otto-1795000000-0123abcd") \
        == "/o/home/web-0123abcd/1795000000"
    for run_dir in ("/o/../web-0123abcd/1795000000", "/o/web-0123abcd/1795000001",
                    "/o/web-0123abcd/1795000000/tasks", "/1795000000"):
        assert log_tree("otto", run_dir, h, "otto-1795000000-0123abcd") is None, run_dir
    assert log_tree("ottolytics", "anything", h, "0123456789abcdef") == \
        "/h/ottolytics/runs/0123456789abcdef"
    for uid in (None, "", ".", "..", "a/b", ".hidden", "a\0b"):
        assert log_tree("ottolytics", None, h, uid) is None, uid
