import pytest
from matplotlib.figure import Figure

import ottolytics
from ottolytics import plots
from known_history import record


@pytest.fixture
def h(db):
    return ottolytics.open(record(db))


@pytest.mark.parametrize("make,title", [
    (lambda h: plots.duration_trend(h, "build"), "Duration of build"),
    (lambda h: plots.success_heatmap(h), "Success rate by task"),
    (lambda h: plots.gantt(h, "run010"), "Run run010 (critical path outlined)"),
    (lambda h: plots.disk_usage(h), "Disk used by run directories"),
])
def test_plots_render_headless(h, tmp_path, make, title):
    fig = make(h)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == title and ax.get_xlabel()
    out = tmp_path / "plot.png"
    fig.savefig(out)
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"


def test_gantt_outlines_the_critical_path(h):
    fig = plots.gantt(h, "run010")
    bars = [p for p in fig.axes[0].patches]
    outlined = [b for b in bars if b.get_linewidth() > 0]
    assert len(bars) == 4 and len(outlined) == 3  # lint, build, test; docs is not on it
