"""16 writer processes at once: no 'database is locked', no lost rows."""

import sqlite3
import subprocess
import sys

import pytest

from ottolytics.store import spool

WRITER = """
import sys, ottolytics
warnings = []
rec = ottolytics.Recorder(sys.argv[1], warn=warnings.append)
n = int(sys.argv[2])
with rec.run(project=f"p{sys.argv[3]}") as run:
    for i in range(n):
        with run.task(f"t{i % 7}", deps=[f"t{(i - 1) % 7}"] if i else None):
            pass
rec.close()
print("degraded" if rec.degraded else "ok", len(warnings))
"""


def test_sixteen_writer_processes_lose_nothing(tmp_path):
    db = tmp_path / "c.db"  # created concurrently too
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(n), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(16)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.decode().split() == ["ok", "0"], (out, err)
        assert b"locked" not in err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM runs WHERE status = 'success'").fetchone() == (16,)
    assert conn.execute("SELECT count(*) FROM tasks WHERE status = 'success'").fetchone() == (16 * n,)
    assert conn.execute("SELECT count(*) FROM transitions").fetchone() == (16 * (2 * n + 2),)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert not spool.pending_files(db)


@pytest.mark.parametrize("round_", range(3))
def test_sixteen_concurrent_exec_shims_on_a_new_store(tmp_path, round_):
    db = tmp_path / "e.db"  # all sixteen race to create it
    procs = [subprocess.Popen([sys.executable, "-m", "ottolytics", "--db", str(db), "exec",
                               "--task", f"job{i}", "--", sys.executable, "-c",
                               f"raise SystemExit({i % 3})"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(16)]
    for i, p in enumerate(procs):
        _out, err = p.communicate(timeout=120)
        assert p.returncode == i % 3
        assert b"ottolytics: warning" not in err, err
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT name, exit_code FROM tasks").fetchall()
    assert sorted(rows) == sorted((f"job{i}", i % 3) for i in range(16))
    conn.close()
