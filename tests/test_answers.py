"""Answers a History keeps (history._Answers): the same question asked again
while no row changed is answered from memory, and never once a row changed."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import ottolytics
from ottolytics.analyze import history as history_mod
from ottolytics.record.recorder import Recorder

from known_history import T0

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "ottolytics.db"


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.db"
    shutil.copy(SAMPLE, path)
    return path


@pytest.fixture
def queries(monkeypatch):
    """How many times the engine ran a query."""
    count = {"n": 0}
    real = history_mod.History._run

    def counted(self, build, fetch):
        count["n"] += 1
        return real(self, build, fetch)
    monkeypatch.setattr(history_mod.History, "_run", counted)
    return count


QUESTIONS = [
    ("success_rate", (), {"by": ["task"], "freq": "W"}),
    ("duration_stats", (), {}),
    ("flaky", (), {"window": 10}),
    ("failures", (), {}),
    ("failure_groups", (), {}),
    ("regressions", (), {}),
    ("disk_growth", (), {"freq": "W"}),
]


@pytest.mark.parametrize("name,args,kwargs", QUESTIONS, ids=[q[0] for q in QUESTIONS])
def test_the_same_question_again_is_answered_without_a_query(sample, queries, name, args,
                                                            kwargs):
    with ottolytics.open(sample) as h:
        first = getattr(h, name)(*args, **kwargs)
        ran = queries["n"]
        assert ran > 0
        again = getattr(h, name)(*args, **kwargs)
        assert queries["n"] == ran            # nothing was read again
        pd.testing.assert_frame_equal(first, again)
        h.keep_answers = False
        pd.testing.assert_frame_equal(first, getattr(h, name)(*args, **kwargs))
        assert queries["n"] > ran             # computed again when asked to


def test_an_answer_changed_by_its_caller_is_not_what_comes_back(sample):
    with ottolytics.open(sample) as h:
        first = h.duration_stats()
        expected = first.copy()
        first["count"] = -1
        first.loc[first.index[0], "mean"] = -5.0
        pd.testing.assert_frame_equal(h.duration_stats(), expected)


def test_a_row_written_since_gives_a_new_answer(db):
    rec = Recorder(db)
    run = rec.run(project="p", uid="r1").start(at=T0)
    run.task("build").start(at=T0).finish(0, at=T0 + 1)
    run.finish(at=T0 + 2)
    with ottolytics.open(db) as h:
        assert h.failures().empty
        assert h.success_rate(by="task", freq=None)["total"].tolist() == [1]
        # another connection writes: a new failure, in a new run and in the old one
        other = Recorder(db)
        late = other.run(project="p", uid="r2").start(at=T0 + 10)
        late.task("build").start(at=T0 + 10).finish(3, at=T0 + 11)
        late.finish(at=T0 + 12)
        failed = h.failures()
        assert failed["run_id"].tolist() == ["r2"]
        assert h.success_rate(by="task", freq=None)["total"].tolist() == [2]
        conn = sqlite3.connect(db)
        conn.execute("UPDATE tasks SET status = 'failed', exit_code = 9 "
                     "WHERE run_id = (SELECT id FROM runs WHERE uid = 'r1')")
        conn.commit()
        conn.close()
        assert sorted(h.failures()["run_id"]) == ["r1", "r2"]
        assert h.success_rate(by="task", freq=None)["failures"].tolist() == [2]


def test_filters_and_arguments_are_part_of_the_question(sample, queries):
    with ottolytics.open(sample) as h:
        whole = h.success_rate(by="project", freq=None)
        one = h.with_filters(project=[whole["project"].iloc[0]])
        narrowed = one.success_rate(by="project", freq=None)
        assert len(narrowed) == 1 and len(whole) > 1
        assert len(h.success_rate(by="project", freq=None)) == len(whole)
        assert h.success_rate(by="task", freq=None).columns.tolist() != whole.columns.tolist()
        ran = queries["n"]
        one.success_rate(by="project", freq=None)  # a view shares its parent's answers
        h.with_filters(project=[whole["project"].iloc[0]]).success_rate(by="project", freq=None)
        assert queries["n"] == ran


def test_a_relative_time_is_the_moment_it_names(sample, monkeypatch, queries):
    """failures(since="7d") asked a day later is another question."""
    with ottolytics.open(sample) as h:
        h.failures(since="400d")
        ran = queries["n"]
        import time
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 86400)
        h.failures(since="400d")
        assert queries["n"] > ran


def test_a_direct_read_keeps_nothing(sample, monkeypatch, queries):
    """Without the mirror no token says the store is unchanged: always computed."""
    monkeypatch.setenv("OTTOLYTICS_MIRROR", "off")
    with ottolytics.open(sample) as h:
        h.duration_stats()
        ran = queries["n"]
        h.duration_stats()
        assert queries["n"] > ran


def test_kept_answers_stay_within_their_bound(sample, monkeypatch):
    monkeypatch.setattr(history_mod, "ANSWERS_BYTES", 40_000)
    with ottolytics.open(sample) as h:
        for freq in ("D", "W", "MS", "h", None):
            h.success_rate(by=["project", "task"], freq=freq)
            assert h._answers.size <= 40_000
        h.forget_answers()
        assert h._answers.size == 0 and not h._answers.kept


def test_a_dataset_keeps_answers_for_its_snapshot(sample, tmp_path, queries):
    with ottolytics.open(sample) as h:
        h.to_parquet(tmp_path / "ds")
    with ottolytics.open(tmp_path / "ds") as d:
        first = d.duration_stats()
        ran = queries["n"]
        pd.testing.assert_frame_equal(d.duration_stats(), first)
        assert queries["n"] == ran


def test_a_wrong_call_raises_even_after_a_right_one(sample):
    """Extra positional arguments were left out of the question: after flaky(5),
    flaky(5, "junk") answered instead of raising TypeError."""
    with ottolytics.open(sample) as h:
        h.flaky(5)
        with pytest.raises(TypeError):
            h.flaky(5, "junk")
        with pytest.raises(TypeError):
            h.regressions("build", 99)


def test_defaults_given_or_not_are_one_question(sample, queries):
    with ottolytics.open(sample) as h:
        h.flaky()
        ran = queries["n"]
        h.flaky(20)
        h.flaky(window=20)
        assert queries["n"] == ran
