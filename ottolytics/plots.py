"""Plots of a History, with matplotlib. Each returns its Figure and never calls
``show()``. They build Figure objects without pyplot, so they work headless
(``savefig`` renders with Agg) and in notebooks (a Figure displays itself).

    fig = ottolytics.plots.duration_trend(h, "build")
    fig.savefig("build.png")
"""

import matplotlib
import matplotlib.dates as mdates
import matplotlib.patches
import numpy as np
from matplotlib.figure import Figure

STATUS_COLORS = {"success": "#2e7d32", "failed": "#c62828", "running": "#1565c0",
                 "pending": "#90a4ae", "skipped": "#b0bec5", "interrupted": "#ef6c00"}


def _figure(width=9, height=4.5):
    # Figure() directly, not pyplot: no global state, nothing for show() to pick up.
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _dates(ax):
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def duration_trend(h, task, freq="D"):
    """The task's median duration per period, with its p25-p75 band and p95."""
    df = h.duration_trend(task, freq)
    fig, ax = _figure()
    if df.empty:
        ax.text(0.5, 0.5, f"no successful runs of {task}", ha="center", transform=ax.transAxes)
    else:
        x = df["period"].dt.tz_convert(None)
        ax.fill_between(x, df["p25"], df["p75"], alpha=0.3, label="p25–p75")
        ax.plot(x, df["p50"], marker="o", markersize=3, label="median")
        ax.plot(x, df["p95"], linestyle="--", linewidth=1, label="p95")
        ax.legend(loc="upper left")
        _dates(ax)
    ax.set_title(f"Duration of {task}")
    ax.set_ylabel("duration (s)")
    ax.set_xlabel("date (UTC)")
    ax.set_ylim(bottom=0)
    return fig


def success_heatmap(h, freq="W", by="task", limit=30):
    """Success rate per task (rows) and period (columns); grey where nothing ran."""
    df = h.success_rate(by=by, freq=freq)
    fig, ax = _figure(10, max(3, 0.35 * min(limit, df[by].nunique() if not df.empty else 1) + 1.5))
    if df.empty:
        ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
        ax.set_title("Success rate")
        return fig
    table = df.pivot_table(index=by, columns="period", values="rate", aggfunc="mean")
    table = table.loc[table.mean(axis=1).sort_values().index[:limit]]  # worst first
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e0e0e0")
    image = ax.imshow(np.ma.masked_invalid(table.to_numpy(dtype=float)), aspect="auto",
                      cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    labels = [p.strftime("%Y-%m-%d") for p in table.columns]
    step = max(1, len(labels) // 12)
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")
    ax.set_xlabel(f"period starting (UTC, {freq})")
    ax.set_title(f"Success rate by {by}")
    fig.colorbar(image, ax=ax, label="success rate")
    return fig


def gantt(h, run):
    """One run's tasks on a time line, coloured by status, the critical path outlined."""
    tasks = h.with_filters(run=[run], since=None, until=None, status=None, task=None).tasks()
    fig, ax = _figure(10, max(3, 0.4 * len(tasks) + 1.5))
    if tasks.empty:
        ax.text(0.5, 0.5, f"run {run} has no tasks", ha="center", transform=ax.transAxes)
        return fig
    tasks = tasks.sort_values(["started_at", "task", "attempt"]).reset_index(drop=True)
    path = set(h.critical_path(run)["task"])
    start = tasks["started_at"].min()
    for i, t in tasks.iterrows():
        begin = (t["started_at"] - start).total_seconds()
        length = t["duration_s"] if t["duration_s"] == t["duration_s"] else 0  # NaN: running
        critical = t["task"] in path
        ax.barh(i, max(length, 0.001), left=begin, color=STATUS_COLORS.get(t["status"], "grey"),
                edgecolor="black" if critical else "none", linewidth=2 if critical else 0)
    ax.set_yticks(range(len(tasks)),
                  [f"{t.task}" + (f" #{t.attempt}" if t.attempt > 1 else "") for t in
                   tasks.itertuples()])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(f"Run {run} (critical path outlined)")
    handles = [matplotlib.patches.Patch(color=c, label=s) for s, c in STATUS_COLORS.items()
               if s in set(tasks["status"].astype(str))]
    handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="black",
                                            label="critical path"))
    ax.legend(handles=handles, loc="lower right")
    return fig


def disk_usage(h, freq="D"):
    """Bytes of run directories over time, stacked per project."""
    df = h.disk_growth(freq)
    fig, ax = _figure()
    if df.empty:
        ax.text(0.5, 0.5, "no sizes recorded", ha="center", transform=ax.transAxes)
    else:
        table = df.astype({"total_bytes": float}).pivot_table(
            index="period", columns="project", values="total_bytes").ffill().fillna(0) / 2 ** 20
        x = table.index.tz_convert(None)
        ax.stackplot(x, table.to_numpy().T, labels=[str(c) for c in table.columns], alpha=0.8)
        ax.legend(loc="upper left")
        _dates(ax)
    ax.set_title("Disk used by run directories")
    ax.set_ylabel("MiB")
    ax.set_xlabel("date (UTC)")
    return fig
