"""A recorded history whose answers are known, for the analysis tests."""

from ottolytics.record.recorder import Recorder

T0 = 1_790_000_000.0
RUNS = 40
REGRESSION_AT = 20


def build_duration(i):
    return (10.0 if i < REGRESSION_AT else 20.0) + (i % 3) * 0.1


def record(db, indexes=range(RUNS)):
    """Runs of lint -> (build, docs) -> test. build doubles from run 20 on; test
    fails in every fourth run (messages differ only in numbers, paths, times) and
    fails then passes on retry in run 5."""
    rec = Recorder(db)
    for i in indexes:
        t = T0 + i * 3600
        run = rec.run(project="web", params={"branch": "main" if i % 2 == 0 else "dev",
                                             "env": "ci"}, uid=f"run{i:03d}")
        run.start(at=t)
        run.task("lint").start(at=t).finish(0, at=t + 1)
        d = build_duration(i)
        run.task("build", deps=["lint"]).start(at=t + 1).finish(0, at=t + 1 + d)
        run.task("docs", deps=["lint"]).start(at=t + 1).finish(0, at=t + 3)
        ts = t + 1 + d
        test = run.task("test", deps=["build"]).start(at=ts)
        if i % 4 == 3:
            test.finish(1, at=ts + 5, stderr_tail=(
                f"collecting...\nError: connection refused to 10.0.0.{i}:5432 at "
                f"2026-01-0{1 + i % 9}T10:00:0{i % 10}Z (pid {1000 + i}) "
                f"socket /tmp/tmp{i}q8z/db.sock"))
        elif i == 5:
            test.finish(2, at=ts + 2, stderr_tail="AssertionError: expected 3 got 4")
            run.task("test", deps=["build"]).start(at=ts + 2).finish(0, at=ts + 7)
        else:
            test.finish(0, at=ts + 5)
        run.finish(at=ts + 8)
    rec.close()
    return db
