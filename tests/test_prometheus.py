import os
import shutil
import stat
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ottolytics
from ottolytics.export.prometheus import write_metrics
from ottolytics.record.recorder import Recorder
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
    path.parent.mkdir()  # (the directory must exist, as node_exporter's does)
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
    assert "# HELP ottolytics_runs " in text and "# TYPE ottolytics_runs gauge" in text
    assert "run" + "_id" not in text and "/tmp" not in text


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus; .ci/run installs it)")
def test_promtool_finds_nothing_to_complain_about(metrics):
    proc = subprocess.run(["promtool", "check", "metrics"], stdin=open(metrics),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


def test_empty_history_and_cli(db, tmp_path):
    from ottolytics.store.connection import Store
    Store.open(db).close()
    path = tmp_path / "empty.prom"
    assert run_cli("export", "prometheus", path).returncode == 0
    fams = families(path)
    assert fams["ottolytics_store_size_bytes"].samples[0].value > 0
    assert not fams["ottolytics_runs"].samples
    assert run_cli("export", "prometheus", path, "--window", "soon").returncode == 2
    if shutil.which("promtool"):
        assert subprocess.run(["promtool", "check", "metrics"], stdin=open(path)).returncode == 0


def _many_tasks(db, names, project="wide"):
    """One run of *project* with a task per name, started one second apart (the
    last name is the newest); every tenth fails."""
    rec = Recorder(db)
    run = rec.run(project=project)
    t0 = 1_790_000_000.0
    run.start(at=t0)
    for i, name in enumerate(names):
        run.task(name).start(at=t0 + i).finish(1 if i % 10 == 0 else 0, at=t0 + i + 0.5)
    run.finish(at=t0 + len(names) + 1)
    rec.close()


def test_task_labels_are_bounded_with_an_other_bucket(db, tmp_path):
    names = [f"item-{i:04d}" for i in range(300)]
    _many_tasks(db, names)
    path = tmp_path / "m.prom"
    write_metrics(ottolytics.open(db), path, window_s=100 * 365 * 86400, max_tasks=50)
    fams = families(path)
    tasks = fams["ottolytics_tasks"]
    assert tasks.type == "gauge"
    series = {s.labels["task"] for s in tasks.samples}
    assert series == set(names[-50:]) | {"__other__"}   # the 50 most recent, then the rest
    by_task = {}
    for s in tasks.samples:
        by_task[s.labels["task"]] = by_task.get(s.labels["task"], 0) + s.value
    assert sum(by_task.values()) == 300 and by_task["__other__"] == 250   # nothing lost
    ratio = {s.labels["task"]: s.value for s in fams["ottolytics_task_success_ratio"].samples}
    assert ratio["__other__"] == pytest.approx(225 / 250)
    count = {s.labels["task"]: s.value for s in fams["ottolytics_task_duration_seconds"].samples
             if s.name.endswith("_count")}
    assert count["__other__"] == 250 and len(count) == 51
    folded = fams["ottolytics_tasks_folded"].samples
    assert [(s.labels, s.value) for s in folded] == [({}, 250)]
    for fam in fams.values():
        assert len({s.labels.get("task") for s in fam.samples}) <= 51


def test_default_limit_keeps_the_textfile_small(db, tmp_path):
    _many_tasks(db, [f"foreach-{i}" for i in range(2000)])
    path = tmp_path / "m.prom"
    assert run_cli("export", "prometheus", path, "--window", "36500d").returncode == 0
    fams = families(path)
    assert len({s.labels["task"] for s in fams["ottolytics_tasks"].samples}) == 101
    assert sum(len(f.samples) for f in fams.values()) < 2000 and path.stat().st_size < 200_000
    narrow = tmp_path / "narrow.prom"
    assert run_cli("export", "prometheus", narrow, "--max-tasks", "5").returncode == 0
    assert len({s.labels["task"] for s in families(narrow)["ottolytics_tasks"].samples}) == 6
    bad = run_cli("export", "prometheus", narrow, "--max-tasks", "0")
    assert bad.returncode == 2 and b"--max-tasks" in bad.stderr and b"Traceback" not in bad.stderr
    if shutil.which("promtool"):
        proc = subprocess.run(["promtool", "check", "metrics"], stdin=open(path),
                              capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_projects_are_bounded_too(db, tmp_path):
    rec = Recorder(db)
    for i in range(30):
        with rec.run(project=f"proj-{i:02d}") as run:
            with run.task("build"):
                pass
    rec.close()
    path = tmp_path / "m.prom"
    write_metrics(ottolytics.open(db), path, max_projects=10)
    fams = families(path)
    projects = {s.labels["project"] for s in fams["ottolytics_runs"].samples}
    assert len(projects) == 11 and "__other__" in projects
    assert sum(s.value for s in fams["ottolytics_runs"].samples) == 30
    for fam in fams.values():
        assert len({s.labels.get("project") for s in fam.samples} - {None}) <= 11, fam.name


def test_stored_counts_are_gauges_that_may_fall(metrics):
    text = open(metrics).read()
    assert "# TYPE ottolytics_runs gauge" in text and "# TYPE ottolytics_tasks gauge" in text
    assert "_total" not in text


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


@pytest.mark.skipif(NODE_EXPORTER is None, reason="node_exporter not installed (Debian package "
                    "prometheus-node-exporter; .ci/run installs it)")
def test_node_exporter_serves_the_textfile(metrics):
    """The real reader: node_exporter's textfile collector, scraped over loopback.
    It rejects a file it cannot parse (node_textfile_scrape_error 1) and drops
    families that clash with its own rules, so every family with samples must
    come through."""
    import time
    import urllib.request
    port = _free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         "--collector.textfile", f"--collector.textfile.directory={metrics.parent}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"node_exporter exited: {proc.stderr.read().decode()[-500:]}")
                time.sleep(0.2)
        assert body is not None, "node_exporter did not answer within 20 s"
    finally:
        proc.terminate()
        proc.wait(10)
    served = {f.name: f for f in text_string_to_metric_families(body)}
    assert served["node_textfile_scrape_error"].samples[0].value == 0
    ours = {name for name in served if name.startswith("ottolytics_")}
    # A family with no samples (no otto script cache here) is rightly not served.
    assert ours == {name for name, f in families(metrics).items() if f.samples}
    runs = {(s.labels["project"], s.labels["status"]): s.value
            for s in served["ottolytics_runs"].samples}
    assert runs[("web", "success")] == 30
    assert set(HOSTILE) <= {s.labels["project"] for s in served["ottolytics_runs"].samples}


def test_a_directory_or_a_missing_one_is_one_line_and_nothing_is_created(db, tmp_path):
    """A new user's report: `export prometheus /tmp` printed "[Errno 21] Is a
    directory: '/.tmp.….tmp' -> '/tmp'", and a mistyped parent directory was
    created silently. The rule is now report weekly's --out rule (one place:
    core.files.output_path)."""
    record(db)
    target = tmp_path / "out"
    target.mkdir()
    proc = run_cli("--db", db, "export", "prometheus", target)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "is a directory; give a file name such as" in err and "Errno" not in err
    assert list(target.iterdir()) == []
    missing = tmp_path / "typo" / "deeper" / "m.prom"
    proc = run_cli("--db", db, "export", "prometheus", missing)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "create it first" in err, err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "dangling"])
@pytest.mark.parametrize("command", ["prometheus", "report"])
def test_a_link_or_a_fifo_target_is_refused_and_left_as_it_was(db, tmp_path, kind, command):
    """A new user's report: `export prometheus /dev/stdout` (and `report weekly
    --out` a FIFO) renamed a regular file over the link or FIFO, breaking
    /dev/stdout for the whole machine. An export replaces a regular file or
    makes a new one; anything else is refused in one line, untouched."""
    record(db)
    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        real = tmp_path / "real.prom"
        if kind == "symlink":
            real.write_text("mine\n")
        target.symlink_to(real)
    args = (["export", "prometheus", target] if command == "prometheus" else
            ["report", "weekly", "--week", "2026-W39", "--out", target])
    proc = run_cli("--db", db, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "not a regular file" in err and "Errno" not in err, err
    assert target.is_symlink() if kind != "fifo" else stat.S_ISFIFO(os.lstat(target).st_mode)
    if kind == "symlink":
        assert (tmp_path / "real.prom").read_text() == "mine\n"


@pytest.mark.parametrize("command", ["prometheus", "report", "parquet"])
def test_a_directory_that_cannot_be_written_is_one_line_without_a_temp_name(
        db, tmp_path, command, make_readonly):
    """A new user's report: `export prometheus /ro/x.prom` printed "[Errno 30]
    Read-only file system: '/ro/.x.prom.10651.6174ba399ff2.tmp'": a raw errno
    naming a file the user never gave, and no word of what to do."""
    record(db)
    folder = tmp_path / "ro"
    folder.mkdir()
    undo = make_readonly(folder)
    args = {"prometheus": ["export", "prometheus", folder / "x.prom"],
            "report": ["report", "weekly", "--week", "2026-W39", "--out", folder / "w.csv"],
            "parquet": ["export", "parquet", folder / "pq"]}[command]
    proc = run_cli("--db", db, *args)
    undo()
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot write" in err and ".tmp" not in err and "Errno" not in err, err
    assert list(folder.iterdir()) == []
