"""manage.runinfo.follow_output: a task's output as it is written, the library
behind ``ottolytics logs --follow`` (the CLI's tests are in test_readsafe.py)."""

import threading

import pytest

import ottolytics
from ottolytics.core.errors import RunNotFound, StoreError
from ottolytics.manage.runinfo import TaskNotFound, follow_output


def test_follow_output_gives_what_a_running_task_writes_until_it_ends(db):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="follow-run") as run:
        task = run.task("build").start()
        task.log("one\n")
        task.flush_logs()
        followed = follow_output(db, "follow-run", "build", poll_s=0.01)
        assert next(followed) == ("text", "one\n")
        task.log("two\n", stream="stderr")
        task.flush_logs()
        assert next(followed) == ("text", "two\n")
        task.finish(0)
        assert list(followed) == []


def test_follow_output_marks_a_new_attempt_and_keeps_to_its_stream(db):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="retry-run") as run:
        first = run.task("t").start()
        first.log("try 1\n")
        first.log("noise\n", stream="stderr")
        followed = follow_output(db, "retry-run", "t", stream="stdout", poll_s=0.01)
        first.finish(1)
        assert next(followed) == ("text", "try 1\n")
        second = run.task("t").start()
        second.log("try 2\n")
        second.finish(0)
        assert list(followed) == [("attempt", 2), ("text", "try 2\n")]


def test_follow_output_waits_for_a_task_of_a_running_run(db):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="later-run") as run:
        followed = follow_output(db, "later-run", "late", poll_s=0.01)

        def start_late():
            with run.task("late") as task:
                task.log("here\n")
        timer = threading.Timer(0.2, start_late)
        timer.start()
        try:
            assert list(followed) == [("text", "here\n")]
        finally:
            timer.join()


def test_follow_output_of_a_missing_task_store_or_run_raises(db, tmp_path):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="done-run") as run:
        with run.task("a"):
            pass
    with pytest.raises(TaskNotFound, match="run done-run has no task 'b'; its tasks are a"):
        list(follow_output(db, "done-run", "b"))
    with pytest.raises(RunNotFound, match="no such run"):
        list(follow_output(db, "nope-run", "a"))
    with pytest.raises(StoreError, match="no store here"):
        list(follow_output(tmp_path / "none.db", "latest", "a"))
