"""The OTTO_HOME walk: totals by the one size definition (otto_tree.du), run and
cache sizes, script references."""

import os

from otto_tree import build, du
from ottolytics.manage import disk


def test_totals_match_du_and_runs_are_sized(home, tmp_path):
    runs = build(home, [3, 2, 1])
    outside = tmp_path / "big"
    outside.write_bytes(b"x" * 100_000)
    os.symlink(outside, runs[0] / "tasks" / "lint" / "link")   # counted as a link only
    (home / "loose.txt").write_text("hello")
    (home / "other").mkdir()
    (home / "other" / "f").write_text("abc")
    for workers in (1, 2):
        scan = disk.scan(home, workers=workers)
        assert scan.total_bytes == du(home)
        [pd] = scan.projects.values()
        assert [r.path for r in pd.runs] == [str(r) for r in runs]
        assert all(r.tree.bytes == du(r.path) for r in pd.runs)
        assert pd.cache_bytes == du(runs[0].parent / ".cache")


def test_cache_references_and_orphans(home):
    runs = build(home, [2, 1])
    [pd] = disk.scan(home).projects.values()
    refs = [r.tree.cache_refs for r in pd.runs]
    assert all(len(x) == 2 for x in refs) and not refs[0] & refs[1]  # lint and build
    assert pd.orphans() == []
    (runs[0].parent / ".cache" / "0000dead.sh").write_text("x")
    [pd] = disk.scan(home).projects.values()
    assert pd.orphans() == ["0000dead.sh"]
    assert sorted(pd.orphans(kept_refs=refs[1])) == sorted(["0000dead.sh", *refs[0]])


def test_many_runs_use_processes_and_agree(home):
    build(home, list(range(1, 80)))
    one, two = disk.scan(home, workers=1), disk.scan(home, workers=2)
    assert one.total_bytes == two.total_bytes == du(home)
    sizes = lambda s: [(r.path, r.tree.bytes, r.tree.cache_refs) for r in s.run_dirs()]  # noqa
    assert sizes(one) == sizes(two)
    seen = []
    disk.scan(home, workers=2, progress=lambda n, total: seen.append((n, total)))
    assert sum(n for n, _t in seen) == seen[-1][1] == 80  # 79 runs and the cache


def test_unreadable_directories_are_reported_not_fatal(home, make_readonly):
    runs = build(home, [2, 1])
    os.chmod(runs[0] / "tasks", 0o000)
    try:
        if os.access(runs[0] / "tasks", os.R_OK):  # root reads it anyway: walk a missing dir
            os.chmod(runs[0] / "tasks", 0o755)
            scan = disk.walk(str(home / "missing"))
            assert scan.errors and scan.errors[0][0].endswith("missing")
            return
        scan = disk.scan(home)
        assert any(p.endswith("tasks") for p, _m in scan.errors)
        assert len(list(scan.run_dirs())) == 2
    finally:
        os.chmod(runs[0] / "tasks", 0o755)


def test_a_threaded_process_walks_alone_with_the_same_answer(home):
    import threading
    build(home, list(range(1, 70)))
    forked = disk.scan(home, workers=2)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        pids = []
        real_fork = os.fork
        os.fork = lambda: pids.append(1) or real_fork()
        try:
            alone = disk.scan(home, workers=2)
        finally:
            os.fork = real_fork
    finally:
        stop.set()
        t.join()
    assert pids == [] and alone.total_bytes == forked.total_bytes == du(home)
