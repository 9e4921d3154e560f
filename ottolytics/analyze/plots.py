"""Plots of a History, with matplotlib. Each returns its Figure and never calls
``show()``. They build Figure objects without pyplot, so they work headless
(``savefig`` renders with Agg) and in notebooks (a Figure displays itself).

    fig = ottolytics.plots.duration_trend(h, "build", project="api")
    fig.savefig("build.png")

Colours are chosen for colour-blind readers (cividis for rates; status colours
that differ in lightness as well as hue), legends sit outside the plotted
data, and every hatch or mark is named in a legend.
"""

__all__ = ["duration_trend", "success_heatmap", "gantt", "disk_usage", "byte_unit",
           "STATUS_COLORS"]

import matplotlib
import matplotlib.dates as mdates
import matplotlib.lines
import matplotlib.patches
import numpy as np
from matplotlib.figure import Figure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ottolytics.analyze.history import History

# Okabe-Ito based: distinguishable with the common colour-vision deficiencies.
STATUS_COLORS = {"success": "#009E73", "failed": "#D55E00", "running": "#0072B2",
                 "pending": "#999999", "skipped": "#E6E6E6", "interrupted": "#E69F00"}
NO_DATA_HATCH = "///"  # not a colour: no grey of the colour scale can be taken for it
RATE_CMAP = "cividis"
UNITS = ((2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB"), (1, "B"))


def _label(value):
    """Text from the store made safe for a plot: control characters escaped
    (formatting.printable: ESC or NUL would render as boxes) and every ``$``
    escaped, so a name is never parsed as mathtext (``$\\bad{$`` would raise
    at savefig)."""
    from ottolytics.core.formatting import printable
    return printable(str(value)).replace("$", "\\$")


def _figure(width=9, height=4.5):
    # Figure() directly, not pyplot: no global state, nothing for show() to pick up.
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _dates(ax):
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _legend_outside(ax, **kwargs):
    """A legend to the right of the axes, where it can cover no data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     **kwargs)


def byte_unit(largest: float) -> tuple[int, str]:
    """The binary unit that shows *largest* bytes readably (the disk plot's axis).

    Parameters
    ----------
    largest : float
        The largest number of bytes to show.

    Returns
    -------
    tuple of (int, str)
        The divisor and the unit's name (B, KiB, MiB, GiB, TiB).

    Example
    -------
    >>> plots.byte_unit(3 * 2 ** 30)
    (1073741824, 'GiB')
    """
    for divisor, name in UNITS:
        if largest >= divisor:
            return divisor, name
    return 1, "B"


def duration_trend(h: "History", task: str, freq: str | None = "D",
                   project: str | None = None) -> Figure:
    """The task's median duration per period, with its p25-p75 band, p95 and the
    change points ``h.regressions()`` detects, for one project.

    A task name shared by several projects (``build`` often is) needs *project*,
    or a history already narrowed to one project; otherwise ValueError names them.

    Parameters
    ----------
    h : History
        The history (its filters apply).
    task : str
        The task.
    freq : str, default "D"
        A pandas alias for the period (``D``, ``W``, ``MS`` ...; see
        ``History.success_rate``).
    project : str, optional
        The project, when the task name is in several.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> plots.duration_trend(h, "build", project="api").savefig("/tmp/build.png")
    """
    df = h.duration_trend(task, freq, project=project)
    projects = sorted(df["project"].dropna().unique()) if not df.empty else []
    if len(projects) > 1:
        raise ValueError(f"task {task!r} runs in {len(projects)} projects "
                         f"({', '.join(map(str, projects))}); pass project=NAME to plot one")
    name = projects[0] if projects else project
    fig, ax = _figure()
    where = f" in {_label(name)}" if name else ""
    if df.empty:
        ax.text(0.5, 0.5, f"no successful runs of {_label(task)}{where}", ha="center",
                transform=ax.transAxes)
    else:
        x = df["period"].dt.tz_convert(None)
        ax.fill_between(x, df["p25"], df["p75"], alpha=0.3, label="p25–p75")
        ax.plot(x, df["p50"], marker="o", markersize=3, label="median")
        ax.plot(x, df["p95"], linestyle="--", linewidth=1, label="p95")
        changes = h.with_filters(project=[name]).regressions(task)
        for i, r in enumerate(changes.itertuples()):
            at = r.changed_at.tz_convert(None)
            ax.axvline(at, color="black", linestyle=":", linewidth=1.2,
                       label="change point" if i == 0 else None)
            ax.annotate(f"{r.ratio:.2f}× {r.direction}\nfrom {r.changed_at:%Y-%m-%d}",
                        xy=(at, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top", fontsize=8)
        _legend_outside(ax)
        _dates(ax)
        if len(changes):
            where += f": {len(changes)} change point{'s' if len(changes) > 1 else ''}"
    ax.set_title(f"Duration of {_label(task)}{where}")
    ax.set_ylabel("duration (s)")
    ax.set_xlabel("date (UTC)")
    ax.set_ylim(bottom=0)
    return fig


def success_heatmap(h: "History", freq: str | None = "W", by: str = "task",
                    limit: int = 30) -> Figure:
    """Success rate per task (rows, worst first) and period (columns).

    Rows are ``project/task``: tasks of one name in different projects stay
    apart. Each cell shows its rate in percent; hatched cells are periods in
    which the task did not run (named in the legend).

    Parameters
    ----------
    h : History
        The history (its filters apply).
    freq : str, default "W"
        A pandas alias for the period (``D``, ``W``, ``W-FRI``, ``MS`` ...).
    by : str, default "task"
        The rows: ``task`` (as project/task), or project, host, status.
    limit : int, default 30
        At most this many rows, the worst.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> plots.success_heatmap(h, freq="W").savefig("/tmp/heatmap.png")
    """
    keys = ("project", by) if by == "task" else (by,)
    df = h.success_rate(by=keys, freq=freq)
    if not df.empty:
        df["row"] = df[list(keys)].astype(str).agg("/".join, axis=1)
    rows = min(limit, df["row"].nunique()) if not df.empty else 1
    fig, ax = _figure(11, max(3, 0.35 * rows + 2))
    title = f"Success rate by {'project/task' if by == 'task' else by} (worst first)"
    if df.empty:
        ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
        ax.set_title(title)
        return fig
    table = df.pivot_table(index="row", columns="period", values="rate", aggfunc="mean")
    table = table.loc[table.mean(axis=1).sort_values(kind="stable").index[:limit]]
    cmap = matplotlib.colormaps[RATE_CMAP].with_extremes(bad=(0, 0, 0, 0))
    values = table.to_numpy(dtype=float)
    # Cells where the task did not run are transparent over a hatched background.
    ax.add_patch(matplotlib.patches.Rectangle(
        (-0.5, -0.5), values.shape[1], values.shape[0], facecolor="white", edgecolor="#bbbbbb",
        hatch=NO_DATA_HATCH, linewidth=0, zorder=0))
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest", zorder=1)
    if values.size <= 1200:
        size = 7 if values.shape[1] <= 20 else 5
        for (i, j), v in np.ndenumerate(values):
            if v == v:
                # cividis is dark at 0 and light at 1: light text on the dark half.
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=size,
                        color="white" if v < 0.6 else "black")
    ax.set_yticks(range(len(table.index)), [_label(i) for i in table.index])
    labels = [p.strftime("%Y-%m-%d") for p in table.columns]
    step = max(1, len(labels) // 12)
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")
    ax.set_xlabel(f"period starting (UTC, {freq})")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="success rate (cells in %)")
    ax.legend(handles=[matplotlib.patches.Patch(facecolor="white", edgecolor="#888888",
                                                hatch=NO_DATA_HATCH, label="did not run")],
              loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, frameon=False)
    return fig


def _dependency_order(tasks, deps):
    """Task names with every task after its dependencies; ties by start time."""
    start = tasks.groupby("task")["started_at"].min()
    depends = deps.groupby("task")["depends_on"].apply(set).to_dict() if len(deps) else {}
    pending = sorted(start.index, key=lambda t: (start[t], t))
    order, placed = [], set()
    while pending:
        ready = [t for t in pending if not (depends.get(t, set()) & set(pending)) - {t}]
        take = ready[0] if ready else pending[0]  # a cycle in recorded deps: start order
        order.append(take)
        placed.add(take)
        pending.remove(take)
    return order


def gantt(h: "History", run: str) -> Figure:
    """One run's tasks on a time line, coloured by status, the critical path
    outlined, rows in dependency order (a task below what it waited for).
    Skipped tasks, which take no time, are marked with a diamond.

    Parameters
    ----------
    h : History
        The history.
    run : str
        Anything ``h.resolve()`` takes: a run id, a unique prefix, or ``latest``.

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> plots.gantt(h, "latest").savefig("/tmp/gantt.png")
    """
    from ottolytics.analyze.analytics import _run_tasks
    run = h.resolve(run)
    one = h.with_filters(run=[run], since=None, until=None, status=None, task=None)
    tasks = one.tasks()
    fig, ax = _figure(11, max(3, 0.4 * len(tasks) + 1.5))
    if tasks.empty:
        ax.text(0.5, 0.5, f"run {_label(run)} has no tasks", ha="center",
                transform=ax.transAxes)
        return fig
    _last, deps = _run_tasks(h, run)
    order = {name: i for i, name in enumerate(_dependency_order(tasks, deps))}
    tasks = tasks.assign(_order=tasks["task"].map(order)).sort_values(
        ["_order", "attempt"]).reset_index(drop=True)
    path = set(h.critical_path(run)["task"])
    start = tasks["started_at"].min()
    skipped_mark = False
    for i, t in tasks.iterrows():
        at = t["started_at"] if t["started_at"] == t["started_at"] else start
        begin = (at - start).total_seconds() if at == at else 0.0
        length = t["duration_s"] if t["duration_s"] == t["duration_s"] else 0  # NaN: running
        critical = t["task"] in path
        color = STATUS_COLORS.get(t["status"], "grey")
        if t["status"] == "skipped":
            ax.plot([begin], [i], marker="D", markersize=9, markerfacecolor=color,
                    markeredgecolor="black", linestyle="none")
            ax.text(begin, i, "  skipped", va="center", fontsize=8)
            skipped_mark = True
            continue
        ax.barh(i, max(length, 0.001), left=begin, color=color,
                edgecolor="black" if critical else "none", linewidth=2 if critical else 0)
    ax.set_yticks(range(len(tasks)),
                  [_label(t.task) + (f" #{t.attempt}" if t.attempt > 1 else "") for t in
                   tasks.itertuples()])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(f"Run {_label(run)} (critical path outlined)")
    statuses = set(tasks["status"].astype(str))
    handles = [matplotlib.patches.Patch(color=c, label=s) for s, c in STATUS_COLORS.items()
               if s in statuses and s != "skipped"]
    if skipped_mark:
        handles.append(matplotlib.lines.Line2D([], [], marker="D", linestyle="none",
                                               markerfacecolor=STATUS_COLORS["skipped"],
                                               markeredgecolor="black", label="skipped"))
    handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="black",
                                            label="critical path"))
    _legend_outside(ax, handles=handles)
    return fig


def disk_usage(h: "History", freq: str | None = "D") -> Figure:
    """Disk over time per project, stacked, in readable binary units.

    Where ``ottolytics usage`` has measured the disk (``h.disk_samples()``), the
    measured totals are drawn: they fall when runs are cleaned up. Otherwise the
    only record is each kept run's size at its end, and the plot says so: the
    bytes of the runs still on record, by the day they started, which cannot
    show what was already cleaned up.

    Parameters
    ----------
    h : History
        The history (its filters apply).
    freq : str, default "D"
        The period of the recorded sizes, when no measurement exists (a pandas
        alias, as for ``History.disk_growth``).

    Returns
    -------
    matplotlib.figure.Figure

    Example
    -------
    >>> plots.disk_usage(h).savefig("/tmp/disk.png")
    """
    samples = h.disk_samples()
    fig, ax = _figure()
    if len(samples):
        table = samples.astype({"total_bytes": float}).pivot_table(
            index="measured_at", columns="project", values="total_bytes",
            aggfunc="sum").ffill().fillna(0)
        title = "Disk used, as measured by ottolytics usage"
        xlabel = "measured at (UTC)"
    else:
        df = h.disk_growth(freq)
        table = df.astype({"total_bytes": float}).pivot_table(
            index="period", columns="project", values="total_bytes").ffill().fillna(0) \
            if not df.empty else None
        title = "Bytes of the runs on record, by start date (clean-ups not shown)"
        xlabel = "date (UTC)"
    if table is None or table.empty:
        ax.text(0.5, 0.5, "no sizes recorded", ha="center", transform=ax.transAxes)
        unit = "bytes"
    else:
        divisor, unit = byte_unit(table.sum(axis=1).max())
        x = table.index.tz_convert(None)
        ax.stackplot(x, (table / divisor).to_numpy().T, labels=[_label(c) for c in table.columns],
                     alpha=0.8)
        _legend_outside(ax)
        _dates(ax)
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.set_xlabel(xlabel)
    return fig
