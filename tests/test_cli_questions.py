"""flaky, failures and regressions from the terminal: each mirrors its library call."""

import json

import pytest

import ottolytics
from ottolytics.cli.main import main
from known_history import REGRESSION_AT, record


@pytest.fixture
def store(db):
    return str(record(db))


def run(capsys, store, *argv):
    code = main(["--db", store, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_flaky_table_and_json_mirror_the_library(capsys, store):
    code, out, _ = run(capsys, store, "flaky", "--window", "40")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["PROJECT", "TASK", "SCORE"]
    assert lines[1].split()[:2] == ["web", "test"] and len(lines) == 2
    code, out, _ = run(capsys, store, "flaky", "--window", "40", "--json")
    expected = ottolytics.open(store).flaky(window=40)
    rows = json.loads(out)
    assert [(r["project"], r["task"], r["retry_passes"]) for r in rows] == \
        list(expected[["project", "task", "retry_passes"]].itertuples(index=False, name=None))


def test_failures_and_groups(capsys, store):
    code, out, _ = run(capsys, store, "failures", "-n", "0", "--jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 11  # ten "connection refused" and the run-5 retry
    assert all(r["task"] == "test" for r in rows)
    code, out, _ = run(capsys, store, "failures", "--groups")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["COUNT", "LAST"]
    assert lines[1].split()[0] == "10" and "connection refused" in lines[1]
    code, out, _ = run(capsys, store, "failures", "--groups", "--json")
    groups = json.loads(out)
    assert [g["count"] for g in groups] == [10, 1]


def test_regressions_finds_the_planted_change(capsys, store):
    code, out, _ = run(capsys, store, "regressions", "build", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1
    assert rows[0]["run_id"] == f"run{REGRESSION_AT:03d}" and rows[0]["direction"] == "slower"
    code, out, _ = run(capsys, store, "regressions", "lint")
    assert code == 0 and out.startswith("no regressions")


def test_filters_narrow_and_bad_arguments_are_one_line(capsys, store):
    code, out, _ = run(capsys, store, "failures", "--task", "lint")
    assert code == 0 and out.strip() == "no failures"
    code, out, err = run(capsys, store, "failures", "--since", "nope")
    assert code == 2 and err.startswith("ottolytics: error: --since:") and len(
        err.splitlines()) == 1
    code, out, err = run(capsys, store, "regressions", "--project", "nope")
    assert code == 1 and "--project nope: no such project" in err and "web" in err
    code, out, err = run(capsys, store, "failures", "--since", "2026-11-01")
    assert code == 0
    code, out, err = run(capsys, store, "flaky", "-n", "-1")
    assert code == 2 and "-n -1" in err
    code, out, err = run(capsys, store, "flaky", "--window", "1")
    assert code == 2 and "window" in err and len(err.splitlines()) == 1


def test_failure_messages_are_cut_at_a_word():
    from ottolytics.cli.questions import _cut
    text = "Error: connection refused to the database server at port 5432 " * 3
    cut = _cut(text, 40)
    assert len(cut) <= 40 and cut.endswith("…") and text.startswith(cut[:-1])
    assert cut[:-1] == cut[:-1].rstrip() and text[len(cut) - 1] == " "


HUGE = "100000000000000000000"


@pytest.mark.parametrize("argv, needle", [
    (["flaky", "--window", "1000000"], "window"),
    (["flaky", "--window", "0"], "window"),
    (["regressions", "--window", "0"], "window"),
    (["regressions", "--window", "1"], "window"),
    (["regressions", "--window", HUGE], "window"),
    (["regressions", "--min-ratio=-1"], "min_ratio"),
    (["regressions", "--min-ratio", "nan"], "min_ratio"),
    (["regressions", "--min-ratio", "inf"], "min_ratio"),
    (["regressions", "--min-ratio", "0"], "min_ratio"),
    (["failures", "-n", HUGE], "-n"),
    (["flaky", "-n", HUGE], "-n"),
    (["stats", "-n", HUGE], "-n"),
    (["grep", "x", "--max", HUGE], "--max"),
])
def test_bad_numbers_exit_2_with_one_line(capsys, store, argv, needle):
    code, out, err = run(capsys, store, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert "Error:" not in err and "LINE" not in err and out == ""


def test_library_refuses_the_same_numbers(store):
    h = ottolytics.open(store)
    for kwargs in ({"window": 0}, {"window": 1}, {"min_ratio": -1}, {"min_ratio": float("nan")},
                   {"min_ratio": 0}, {"window": 10**20}):
        with pytest.raises(ValueError) as exc:
            h.regressions(**kwargs)
        assert ("window" in str(exc.value)) == ("window" in kwargs)
    for window in (0, 1, 1_000_000, 10**20):
        with pytest.raises(ValueError, match="window"):
            h.flaky(window=window)
    assert len(h.flaky(window=100_000)) == 1


def test_grep_unknown_project_names_the_known_ones(capsys, store):
    code, out, err = run(capsys, store, "grep", "Error", "--project", "nope")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "--project nope: no such project" in err and "web" in err
    code, out, err = run(capsys, store, "grep", "refused", "--project", "web")
    assert code == 0 and "connection refused" in out


def test_runs_with_a_task_filter_are_the_runs_that_ran_it(db):
    from ottolytics.record.recorder import Recorder
    record(db)
    rec = Recorder(db)
    with rec.run(project="web", uid="only-deploy") as run:
        run.task("deploy").start().finish(0)
    h = ottolytics.open(db)
    assert list(h.with_filters(task="deploy").runs()["run_id"]) == ["only-deploy"]
    assert len(h.with_filters(task="test").runs()) == 40
    assert len(ottolytics.open(db, task=["deploy", "lint"]).runs()) == 41
    assert len(h.runs()) == 41
