import sqlite3

from ottolytics.demo import run_demo


def test_demo_records_a_run_through_the_shim(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert "ended: failed" in out and "✗ failed" in out
    conn = sqlite3.connect(tmp_path / "demo-home" / "ottolytics.db")
    assert conn.execute("SELECT name, status, exit_code FROM tasks ORDER BY id").fetchall() == [
        ("lint", "success", 0), ("build", "success", 0), ("test", "failed", 1)]
    assert conn.execute("SELECT key, value FROM run_params").fetchall() == [("branch", "main")]
    assert conn.execute("SELECT p.name, r.status FROM runs r JOIN projects p "
                        "ON p.id = r.project_id").fetchall() == [("demo", "failed")]
    conn.close()
    logs = list((tmp_path / "demo-home" / "ottolytics" / "runs").glob("*/tasks/test/stderr.log"))
    assert logs and "FAILED" in logs[0].read_text()
