import pytest
from matplotlib.figure import Figure

import ottolytics
from ottolytics.analyze import plots
from ottolytics.record.recorder import Recorder
from known_history import T0, record


def _record_second_project(db):
    """A second project whose tasks share names with the known history's
    ("build", "test"), one run of it with a skipped task."""
    rec = Recorder(db)
    for i in range(6):
        t = T0 + i * 3600 + 60
        run = rec.run(project="api", uid=f"api{i:03d}")
        run.start(at=t)
        run.task("build").start(at=t).finish(0 if i != 2 else 1, at=t + 100)
        if i == 5:
            run.skip_task("docs", reason="up to date", deps=["build"], at=t + 100)
        run.task("test", deps=["build"]).start(at=t + 100).finish(0, at=t + 130)
        run.finish(at=t + 131)
    rec.close()
    return db


@pytest.fixture
def h(db):
    return ottolytics.open(record(db))


@pytest.fixture
def h2(db):
    return ottolytics.open(_record_second_project(record(db)))


def _render(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_outside_axes(fig, ax):
    renderer = _render(fig)
    legend = ax.get_legend()
    assert legend is not None
    box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    return not box.overlaps(area)


@pytest.mark.parametrize("make,title", [
    (lambda h: plots.duration_trend(h, "build"), "Duration of build in web: 1 change point"),
    (lambda h: plots.success_heatmap(h), "Success rate by project/task (worst first)"),
    (lambda h: plots.gantt(h, "run010"), "Run run010 (critical path outlined)"),
    (lambda h: plots.disk_usage(h),
     "Bytes of the runs on record, by start date (clean-ups not shown)"),
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


def test_duration_trend_never_mixes_projects(h2):
    trend = h2.duration_trend("build")
    assert set(trend["project"]) == {"web", "api"}
    assert trend.groupby("project")["count"].sum().to_dict() == {"api": 5, "web": 40}
    with pytest.raises(ValueError, match="2 projects .*api, web.*project="):
        plots.duration_trend(h2, "build")
    fig = plots.duration_trend(h2, "build", project="api")
    assert fig.axes[0].get_title() == "Duration of build in api"
    # Narrowing the history to one project works as well as project=.
    fig = plots.duration_trend(h2.with_filters(project=["web"]), "build")
    assert fig.axes[0].get_title() == "Duration of build in web: 1 change point"


def test_duration_trend_marks_the_change_point(h):
    fig = plots.duration_trend(h, "build")
    ax = fig.axes[0]
    change = h.regressions("build").iloc[0]
    marks = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(marks) == 1
    import pandas as pd
    assert pd.Timestamp(marks[0].get_xdata()[0]).date() == change["changed_at"].date()
    assert any("slower" in t.get_text() for t in ax.texts)
    assert _legend_outside_axes(fig, ax)


def test_heatmap_keeps_projects_apart_and_shows_values(h2):
    fig = plots.success_heatmap(h2, freq="D")
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert "api/build" in rows and "web/build" in rows and "web/test" in rows
    assert rows.index("api/build") < rows.index("web/build")  # worst first
    cells = [t.get_text() for t in ax.texts]
    assert "100" in cells and any(c not in ("100", "") for c in cells)
    image = ax.get_images()[0]
    assert image.get_cmap().name.startswith("cividis")  # readable without red/green
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["did not run"]


def test_gantt_rows_follow_dependencies_and_marks_skips(h2):
    fig = plots.gantt(h2, "api005")
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows.index("build") < rows.index("docs") and rows.index("build") < rows.index("test")
    diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "skipped" in labels and "critical path" in labels
    assert _legend_outside_axes(fig, ax)


def test_gantt_dependency_order_beats_start_order(h):
    # In run005 "test" failed and was retried: both attempts stay below build.
    fig = plots.gantt(h, "run005")
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows[0] == "lint" and rows.index("build") < rows.index("test")
    assert rows.index("test") < rows.index("test #2")


def test_disk_plot_uses_readable_units_and_measured_samples(h, db):
    fig = plots.disk_usage(h)
    assert fig.axes[0].get_ylabel() in {"B", "KiB", "MiB", "GiB", "TiB"}
    assert plots.byte_unit(3 * 2 ** 30) == (2 ** 30, "GiB")
    assert plots.byte_unit(512) == (1, "B")
    assert plots.byte_unit(0) == (1, "B")
    import sqlite3
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO disk_samples(at, project, runs, run_bytes, cache_bytes, "
                     "orphan_cache_bytes, other_bytes) VALUES (?, 'web', 5, ?, 0, 0, 0)",
                     [(T0 + k * 86400, b) for k, b in enumerate((3 * 2 ** 30, 5 * 2 ** 30, 2 * 2 ** 30))])
    conn.commit()
    conn.close()
    fig = plots.disk_usage(ottolytics.open(db))
    ax = fig.axes[0]
    assert ax.get_title() == "Disk used, as measured by ottolytics usage"
    assert ax.get_ylabel() == "GiB"
    # The measured curve falls after a clean-up: 3, 5, then 2 GiB.
    tops = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert max(tops) == pytest.approx(5) and 2 in {round(v, 6) for v in tops}
    assert _legend_outside_axes(fig, ax)


def test_gantt_takes_latest_and_prefixes(h):
    assert plots.gantt(h, "latest").axes[0].get_title() == "Run run039 (critical path outlined)"
    from ottolytics.manage.runinfo import RunNotFound
    with pytest.raises(RunNotFound, match="ambiguous"):
        plots.gantt(h, "run03")
    with pytest.raises(RunNotFound):
        plots.gantt(h, "nope-nope")


HOSTILE_TASK = "test:$FOO$ and $\\bad{$ \x1b[2J"
HOSTILE_PROJECT = "p$x$\x07"
HOSTILE_RUN = "r$1$\x1b"


def _hostile(db):
    rec = Recorder(db)
    for i in range(3):
        t = T0 + i * 86400
        run = rec.run(project=HOSTILE_PROJECT, uid=HOSTILE_RUN if i == 2 else f"h{i}")
        run.start(at=t)
        run.task("lint").start(at=t).finish(0, at=t + 1)
        run.task(HOSTILE_TASK, deps=["lint"]).start(at=t + 1).finish(i % 2, at=t + 3)
        run.finish(at=t + 4, size_bytes=1000 + i)
    rec.close()
    return db


def _all_text(fig):
    ax = fig.axes[0]
    texts = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    texts += [t.get_text() for t in ax.get_yticklabels() + ax.get_xticklabels() + ax.texts]
    legend = ax.get_legend()
    if legend is not None:
        texts += [t.get_text() for t in legend.get_texts()]
    return texts


@pytest.mark.parametrize("make", [
    lambda h: plots.gantt(h, HOSTILE_RUN),
    lambda h: plots.duration_trend(h, HOSTILE_TASK),
    lambda h: plots.duration_trend(h, "nothing$here$\x1b"),
    lambda h: plots.success_heatmap(h),
    lambda h: plots.disk_usage(h),
])
def test_names_with_dollars_and_control_characters_render(db, tmp_path, make):
    h = ottolytics.open(_hostile(db))
    fig = make(h)
    out = tmp_path / "plot.png"
    fig.savefig(out)                      # mathtext used to raise here on '$\bad{'
    assert out.read_bytes()[:4] == b"\x89PNG"
    texts = _all_text(fig)
    assert all(ch not in t for t in texts for ch in "\x1b\x00\x07"), texts
    assert any("\\x1b" in t or "\\x07" in t for t in texts), texts
