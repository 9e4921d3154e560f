"""The README's main command: ottolytics demo on the bundled sample."""

import hashlib
import os
from pathlib import Path

from ottolytics.tools.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_demo_on_the_bundled_sample(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    before = _digest(ROOT / "data" / "sample")
    assert run_demo(out=tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "all time: 810 runs, 4857 tasks" in out and "SUCCESS RATE" in out
    assert "api/build got 1.5" in out and "from 2026-10-12" in out     # the planted regression
    assert "web/test:integration" in out                                # the planted flaky test
    for name in ("weekly-2026-W46.csv", "ottolytics.prom", "api-build-duration.png",
                 "success-heatmap.png"):
        path = tmp_path / "out" / name
        assert str(path) in out and path.stat().st_size > 100
    assert (tmp_path / "out" / "weekly-2026-W46.csv").read_text().startswith("week,week_start")
    assert _digest(ROOT / "data" / "sample") == before   # the committed copy is untouched
    groups = [line.split("h.failure_groups():", 1)[1].split(": ", 1)[1]
              for line in out.splitlines() if "h.failure_groups():" in line]
    assert len(groups) == 3
    # A long message is cut between words, and says so with an ellipsis.
    assert "FAILED tests/integration/test_sessions.py::test_session_expiry[387]…" in groups
    for message in groups:
        assert len(message) <= 72 and not message.endswith((" …", "-…"))


def test_shorten_cuts_at_a_word_boundary():
    from ottolytics.core.formatting import shorten
    assert shorten("short enough", 20) == "short enough"
    assert shorten("the quick brown fox jumps", 16) == "the quick brown…"
    assert shorten("ImportError: no module - named x", 26) == "ImportError: no module…"
    assert shorten("a" * 30, 10) == "a" * 9 + "…"          # no space: a hard cut
    assert shorten(None, 10) == ""


def test_demo_generates_a_sample_when_there_is_none(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert "a sample generated just now" in out
    assert (tmp_path / "demo-output" / "ottolytics.prom").exists()
    assert run_demo(sample=str(tmp_path / "nowhere")) == 1


def test_demo_metrics_describe_the_end_of_the_sample(tmp_path, capsys, monkeypatch):
    """The sample ended 2026-11-20: the windows end where the history ends, not
    today, so the duration and ratio families have samples."""
    from prometheus_client.parser import text_string_to_metric_families
    monkeypatch.chdir(ROOT)
    assert run_demo(out=tmp_path / "out") == 0
    text = (tmp_path / "out" / "ottolytics.prom").read_text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("ottolytics_task_duration_seconds", "ottolytics_task_success_ratio",
                 "ottolytics_task_last_duration_seconds"):
        assert fams[name].samples, name
    ratios = [s.value for s in fams["ottolytics_task_success_ratio"].samples]
    assert all(0 <= r <= 1 for r in ratios) and min(ratios) < 1
