import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ottolytics
from ottolytics.prometheus import write_metrics
from ottolytics.recorder import Recorder
from known_history import record
from conftest import run_cli

HOSTILE = ['quote "x"', "back\\slash", "new\nline", "ünïcødé ✓", "a,b=c{d}"]


def families(path):
    return {f.name: f for f in text_string_to_metric_families(open(path).read())}


@pytest.fixture
def metrics(db, tmp_path):
    record(db)
    rec = Recorder(db)
    for name in HOSTILE:
        with rec.run(project=name) as run:
            with run.task(name):
                pass
    rec.close()
    path = tmp_path / "out" / "ottolytics.prom"
    write_metrics(ottolytics.open(db), path, window_s=10 * 365 * 86400)
    return path


def test_families_parse_back_with_bounded_labels(metrics):
    fams = families(metrics)
    expected = {"ottolytics_runs", "ottolytics_tasks", "ottolytics_last_run_timestamp_seconds",
                "ottolytics_task_last_success_timestamp_seconds", "ottolytics_runs_running",
                "ottolytics_runs_stale", "ottolytics_runs_interrupted",
                "ottolytics_task_duration_seconds", "ottolytics_task_last_duration_seconds",
                "ottolytics_task_success_ratio", "ottolytics_run_disk_bytes",
                "ottolytics_store_size_bytes", "ottolytics_export_timestamp_seconds"}
    assert expected <= set(fams)
    allowed = {"project", "task", "status", "quantile"}
    for f in fams.values():
        for s in f.samples:
            assert set(s.labels) <= allowed, (f.name, s.labels)
            assert s.timestamp is None
    runs = {(s.labels["project"], s.labels["status"]): s.value
            for s in fams["ottolytics_runs"].samples}
    assert runs[("web", "success")] == 30 and runs[("web", "failed")] == 10
    ratio = {s.labels["task"]: s.value for s in fams["ottolytics_task_success_ratio"].samples
             if s.labels["project"] == "web"}
    assert ratio["test"] == pytest.approx(30 / 41) and 0 <= min(ratio.values()) <= 1
    q = {s.labels.get("quantile"): s.value for s in fams["ottolytics_task_duration_seconds"].samples
         if s.labels.get("task") == "lint" and s.labels.get("project") == "web"}
    assert q["0.5"] == pytest.approx(1.0)
    # Hostile names survive escaping and parse back exactly.
    projects = {s.labels["project"] for s in fams["ottolytics_runs"].samples}
    assert set(HOSTILE) <= projects
    text = open(metrics).read()
    assert "# HELP ottolytics_runs_total" in text and "# TYPE ottolytics_runs_total counter" in text
    assert "run" + "_id" not in text and "/tmp" not in text


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus; .ci/run installs it)")
def test_promtool_finds_nothing_to_complain_about(metrics):
    proc = subprocess.run(["promtool", "check", "metrics"], stdin=open(metrics),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


def test_empty_history_and_cli(db, tmp_path):
    from ottolytics.store import Store
    Store.open(db).close()
    path = tmp_path / "empty.prom"
    assert run_cli("export", "prometheus", path).returncode == 0
    fams = families(path)
    assert fams["ottolytics_store_size_bytes"].samples[0].value > 0
    assert not fams["ottolytics_runs"].samples
    assert run_cli("export", "prometheus", path, "--window", "soon").returncode == 2
    if shutil.which("promtool"):
        assert subprocess.run(["promtool", "check", "metrics"], stdin=open(path)).returncode == 0
