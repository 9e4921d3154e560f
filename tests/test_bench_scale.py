"""bench --scale's plumbing: where the synthetic stores are kept, that a store is
synthesized once and reused, and the errors of a bad --only. (The measurements
themselves take minutes; docs/benchmarks.md holds their figures.)"""

import os
import sqlite3

from ottolytics.tools import bench_scale


def test_the_work_directory_is_the_flag_then_the_environment_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OTTOLYTICS_BENCH_WORK", str(tmp_path / "env"))
    assert bench_scale.work_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert bench_scale.work_dir() == tmp_path / "env"
    monkeypatch.delenv("OTTOLYTICS_BENCH_WORK")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert bench_scale.work_dir() == tmp_path / "cache" / "ottolytics" / "bench"


def test_a_store_is_synthesized_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setitem(bench_scale.SCALES, "tiny", 30)
    said = []
    first = bench_scale.cached_store(tmp_path / "work", "tiny", log=said.append)
    conn = sqlite3.connect(first)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] >= 30 * 20
    conn.close()
    stamp = os.stat(first).st_mtime_ns
    assert said and "synthesizing" in said[0]
    said.clear()
    again = bench_scale.cached_store(tmp_path / "work", "tiny", log=said.append)
    assert again == first and os.stat(again).st_mtime_ns == stamp and not said


def test_an_unknown_group_exits_2(tmp_path, capsys):
    work = tmp_path / "work"
    assert bench_scale.main("1M", only=["nope"], work=str(work)) == 2
    assert "choose from rate, analytics, tasks, commands, parquet" in capsys.readouterr().err
    assert not work.exists()   # nothing synthesized
