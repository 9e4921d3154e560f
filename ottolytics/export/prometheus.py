"""Prometheus metrics for node_exporter's textfile collector.

Built with prometheus_client (a registry of our own, its text written by
core.files.atomic_write: a temporary file beside the target, fsync, rename, fsync
the directory), never formatted by hand. Labels are project, task and status only
(plus ``quantile`` in the duration summary), never run ids or paths, and their
number is bounded: the ``max_projects`` most recently run projects and the
``max_tasks`` most recently run tasks keep their names; the rest are summed into
``project="__other__"`` / ``task="__other__"``. No sample carries a timestamp:
node_exporter rejects those.
"""

__all__ = ["write_metrics", "registry_for", "HistoryCollector"]

import os
import time

import pandas as pd

from ottolytics.analyze.analytics import quantiles_sql
from ottolytics.analyze.duck import sqlite_literal
from ottolytics.core.files import atomic_write, output_path
from ottolytics.store.statuses import OUTCOMES, sql_in, success_rate
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import ALLOWUTF8
from prometheus_client.core import GaugeMetricFamily, Metric

PREFIX = "ottolytics"
QUANTILES = (0.5, 0.9, 0.95)
DEFAULT_WINDOW_S = 7 * 86400
STALE_AFTER_S = 24 * 3600
MAX_TASKS = 100      # (project, task) names with series of their own
MAX_PROJECTS = 20    # projects with series of their own
OTHER = "__other__"  # the label value the rest are summed into


class HistoryCollector:
    """Collects the metric families from a History when the registry is read."""

    def __init__(self, h, window_s=DEFAULT_WINDOW_S, now=None, max_tasks=MAX_TASKS,
                 max_projects=MAX_PROJECTS):
        if max_tasks < 1 or max_projects < 1:
            raise ValueError("max_tasks and max_projects must be at least 1")
        self.h = h
        self.window_s = window_s
        self.now = now
        self.max_tasks = max_tasks
        self.max_projects = max_projects

    def _kept(self, runs, ranks):
        """The projects and (project, task) pairs that keep their names: the most
        recently started ones (then the busiest, then by name)."""
        last = {}
        for project, _status, _n, started, _stale in runs.itertuples(index=False):
            last[project] = max(last.get(project, float("-inf")),
                                float("-inf") if pd.isna(started) else started)
        for project, _task, started, _n in ranks.itertuples(index=False):
            last.setdefault(project, float("-inf") if pd.isna(started) else started)
        projects = set(sorted(last, key=lambda p: (-last[p], p))[:self.max_projects])
        ranks = ranks[ranks["project"].isin(projects)].copy()
        ranks["key"] = ranks["last"].fillna(float("-inf"))
        ranks = ranks.sort_values(["key", "n", "project", "task"],
                                  ascending=[False, False, True, True])
        top = ranks.iloc[:self.max_tasks]
        tasks = set(zip(top["project"], top["task"]))
        return projects, tasks, len(last) - len(projects)

    def collect(self):
        h = self.h
        now = time.time() if self.now is None else self.now
        since = now - self.window_s
        p = PREFIX

        runs = h.sql(f"SELECT project, CAST(status AS VARCHAR) AS status, "
                     f"count(*) AS n, max(epoch(started_at)) AS last, "
                     f"count(*) FILTER (WHERE CAST(status AS VARCHAR) = 'running' "
                     f"AND epoch(started_at) < {now - STALE_AFTER_S}) AS stale "
                     f"FROM runs GROUP BY ALL")
        # One pass over every attempt: counts per status, newest starts. The
        # window's figures are read after, from the window's attempts alone.
        counts = h.sql("SELECT project, task, CAST(status AS VARCHAR) AS status, "
                       "count(*) AS n_all, max(started_s) AS last, "
                       "max(started_s) FILTER (WHERE status = 'success') AS last_success "
                       "FROM attempts GROUP BY ALL")
        ranks = (counts.groupby(["project", "task"], sort=False, dropna=False)
                 .agg(last=("last", "max"), n=("n_all", "sum")).reset_index())
        projects, kept, projects_folded = self._kept(runs, ranks)
        tasks_folded = len(ranks) - len(kept)

        def project_of(name):
            return name if name in projects else OTHER

        total = GaugeMetricFamily(f"{p}_runs", "Runs in the store, by final status "
                                  "(falls when runs are cleaned).", labels=["project", "status"])
        last_run = GaugeMetricFamily(f"{p}_last_run_timestamp_seconds",
                                     "Start time of the newest run.", labels=["project"])
        running = GaugeMetricFamily(f"{p}_runs_running", "Runs running now.", labels=["project"])
        stale = GaugeMetricFamily(f"{p}_runs_stale",
                                  "Runs still running after 24 h: probably stale.",
                                  labels=["project"])
        interrupted = GaugeMetricFamily(f"{p}_runs_interrupted",
                                        "Runs that ended interrupted.", labels=["project"])
        per_project, per_status = {}, {}
        for project, status, n, last, n_stale in runs.itertuples(index=False):
            project = project_of(project)
            per_status[(project, status)] = per_status.get((project, status), 0) + n
            entry = per_project.setdefault(project, {"last": 0, "running": 0, "stale": 0,
                                                     "interrupted": 0})
            entry["last"] = max(entry["last"], 0 if pd.isna(last) else last)
            entry["stale"] += n_stale
            if status in ("running", "interrupted"):
                entry[status] += n
        for (project, status), n in sorted(per_status.items()):
            total.add_metric([project, status], n)
        for project, e in sorted(per_project.items()):
            last_run.add_metric([project], e["last"])
            running.add_metric([project], e["running"])
            stale.add_metric([project], e["stale"])
            interrupted.add_metric([project], e["interrupted"])
        yield from (total, last_run, running, stale, interrupted)

        # The all-time totals, with folded names summed into OTHER.
        per_status, newest_success = {}, {}
        for project, task, status, n, _last, success in counts.itertuples(index=False):
            key = (project_of(project), task if (project, task) in kept else OTHER)
            per_status[key + (status,)] = per_status.get(key + (status,), 0) + n
            if not pd.isna(success):
                newest_success[key] = max(newest_success.get(key, success), success)
        task_total = GaugeMetricFamily(f"{p}_tasks", "Task attempts in the store, by status "
                                       "(falls when runs are cleaned).",
                                       labels=["project", "task", "status"])
        last_success = GaugeMetricFamily(f"{p}_task_last_success_timestamp_seconds",
                                         "Start time of the task's newest successful attempt.",
                                         labels=["project", "task"])
        for (project, task, status), n in sorted(per_status.items(), key=lambda kv: str(kv[0])):
            task_total.add_metric([project, task, status], n)
        for (project, task), at in sorted(newest_success.items(), key=lambda kv: str(kv[0])):
            last_success.add_metric([project, task], at)

        # The window's durations and ratio per task (finished attempts only), over
        # the window's rows alone: a filter on time skips the older files' row groups.
        fin = f"status IN {sql_in(OUTCOMES)}"
        other = sqlite_literal(OTHER)
        project_sql = "project" if not projects_folded else (
            f"CASE WHEN project IN ({', '.join(map(sqlite_literal, sorted(projects)))}) "
            f"THEN project ELSE {other} END")
        task_sql = "task" if not tasks_folded else (
            "CASE WHEN (project, task) IN (" + ", ".join(
                f"({sqlite_literal(pr)}, {sqlite_literal(t)})" for pr, t in sorted(kept))
            + f") THEN task ELSE {other} END")
        # The quantiles as one list aggregate: one sort of each group's durations.
        q = f"{quantiles_sql('duration_s', QUANTILES)} FILTER (WHERE {fin}) AS qs"
        window = h.sql(f"""
            SELECT * EXCLUDE (qs), {', '.join(f'qs[{i + 1}] AS q{i}' for i in range(len(QUANTILES)))}
            FROM (
            SELECT project, task,
                   count(duration_s) FILTER (WHERE {fin}) AS n,
                   sum(duration_s) FILTER (WHERE {fin}) AS total,
                   count(*) FILTER (WHERE status = 'success') AS ok,
                   count(*) FILTER (WHERE {fin}) AS done,
                   arg_max(duration_s, started_s) FILTER (WHERE duration_s IS NOT NULL)
                   AS last, {q}
            FROM (SELECT * REPLACE ({project_sql} AS project, {task_sql} AS task)
                  FROM attempts WHERE started_s >= {since})
            GROUP BY project, task)
            ORDER BY project, task""")
        recent = window[window["n"] + window["done"] > 0]
        folded = GaugeMetricFamily(f"{p}_tasks_folded",
                                   f"Task names summed into task=\"{OTHER}\" (over the "
                                   f"limit of {self.max_tasks}).")
        folded.add_metric([], tasks_folded)
        folded_projects = GaugeMetricFamily(f"{p}_projects_folded",
                                            f"Projects summed into project=\"{OTHER}\" (over "
                                            f"the limit of {self.max_projects}).")
        folded_projects.add_metric([], projects_folded)
        yield from (task_total, last_success, folded, folded_projects)

        summary = Metric(f"{p}_task_duration_seconds",
                         f"Task durations over the last {self.window_s / 86400:g} days.", "summary")
        last_duration = GaugeMetricFamily(f"{p}_task_last_duration_seconds",
                                          "Duration of the task's newest attempt.",
                                          labels=["project", "task"])
        ratio = GaugeMetricFamily(f"{p}_task_success_ratio",
                                  f"Successful / finished attempts over the last "
                                  f"{self.window_s / 86400:g} days (0 to 1).",
                                  labels=["project", "task"])
        for row in recent.itertuples(index=False):
            labels = {"project": row.project, "task": row.task}
            for i, x in enumerate(QUANTILES):
                value = getattr(row, f"q{i}")
                if not pd.isna(value):
                    summary.add_sample(f"{p}_task_duration_seconds",
                                       dict(labels, quantile=str(x)), value)
            summary.add_sample(f"{p}_task_duration_seconds_count", labels, row.n)
            summary.add_sample(f"{p}_task_duration_seconds_sum", labels,
                               0.0 if pd.isna(row.total) else row.total)
            if not pd.isna(row.last):
                last_duration.add_metric([row.project, row.task], row.last)
            rate = success_rate(row.ok, row.done - row.ok)
            if rate is not None:
                ratio.add_metric([row.project, row.task], rate)
        yield from (summary, last_duration, ratio)

        disk = h.disk_usage()
        run_bytes = GaugeMetricFamily(f"{p}_run_disk_bytes",
                                      "Bytes of run directories on disk.", labels=["project"])
        cache_bytes = GaugeMetricFamily(f"{p}_cache_disk_bytes",
                                        "Bytes of the project's otto script cache.",
                                        labels=["project"])
        sums = {}
        for row in disk.itertuples(index=False):
            entry = sums.setdefault(project_of(row.project), [None, None])
            for i, value in enumerate((row.run_bytes, row.cache_bytes)):
                if not pd.isna(value):
                    entry[i] = (entry[i] or 0) + float(value)
        for project, (run_b, cache_b) in sorted(sums.items()):
            if run_b is not None:
                run_bytes.add_metric([project], run_b)
            if cache_b is not None:
                cache_bytes.add_metric([project], cache_b)
        yield from (run_bytes, cache_bytes)

        store = GaugeMetricFamily(f"{p}_store_size_bytes",
                                  "Bytes of the store files (with their WAL).")
        store.add_metric([], float(sum(
            os.path.getsize(f) for path in h.paths for f in (path, path + "-wal")
            if os.path.isfile(f))))
        stamp = GaugeMetricFamily(f"{p}_export_timestamp_seconds",
                                  "When ottolytics last wrote these metrics.")
        stamp.add_metric([], now)
        yield from (store, stamp)


def registry_for(h, window_s=DEFAULT_WINDOW_S, now=None, max_tasks=MAX_TASKS,
                 max_projects=MAX_PROJECTS):
    registry = CollectorRegistry()
    registry.register(HistoryCollector(h, window_s, now, max_tasks, max_projects))
    return registry


def write_metrics(h, path, window_s=DEFAULT_WINDOW_S, max_tasks=MAX_TASKS,
                  max_projects=MAX_PROJECTS, now=None):
    """Write the metrics of *h* to *path*, atomically, for node_exporter. *now*
    (unix seconds; default the current time) is where the window ends."""
    path = output_path(path, "ottolytics.prom")  # a file in an existing directory
    atomic_write(path, generate_latest(registry_for(h, window_s, now=now, max_tasks=max_tasks,
                                                    max_projects=max_projects),
                                       ALLOWUTF8))  # as write_to_textfile escapes
    return path
