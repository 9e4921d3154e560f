"""Prometheus metrics for node_exporter's textfile collector.

Built with prometheus_client (a registry of our own, written with
``write_to_textfile``, which writes a temporary file beside the target and
renames it), never formatted by hand. Labels are bounded: project, task and
status only (plus ``quantile`` in the duration summary), never run ids or
paths. No sample carries a timestamp: node_exporter rejects those.
"""

import os
import time

import pandas as pd
from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "ottolytics"
QUANTILES = (0.5, 0.9, 0.95)
DEFAULT_WINDOW_S = 7 * 86400
STALE_AFTER_S = 24 * 3600


class HistoryCollector:
    """Collects the metric families from a History when the registry is read."""

    def __init__(self, h, window_s=DEFAULT_WINDOW_S, now=None):
        self.h = h
        self.window_s = window_s
        self.now = now

    def collect(self):
        h = self.h
        now = time.time() if self.now is None else self.now
        since = now - self.window_s
        p = PREFIX

        runs = h.query(lambda a: f"SELECT project, CAST(status AS VARCHAR) AS status, "
                                 f"count(*) AS n, max(epoch(started_at)) AS last, "
                                 f"count(*) FILTER (WHERE CAST(status AS VARCHAR) = 'running' "
                                 f"AND epoch(started_at) < {now - STALE_AFTER_S}) AS stale "
                                 f"FROM ({h.runs_sql(a)}) GROUP BY ALL")
        total = CounterMetricFamily(f"{p}_runs", "Runs recorded, by final status.",
                                    labels=["project", "status"])
        last_run = GaugeMetricFamily(f"{p}_last_run_timestamp_seconds",
                                     "Start time of the newest run.", labels=["project"])
        running = GaugeMetricFamily(f"{p}_runs_running", "Runs running now.", labels=["project"])
        stale = GaugeMetricFamily(f"{p}_runs_stale",
                                  "Runs still running after 24 h: probably stale.",
                                  labels=["project"])
        interrupted = GaugeMetricFamily(f"{p}_runs_interrupted",
                                        "Runs that ended interrupted.", labels=["project"])
        per_project = {}
        for project, status, n, last, n_stale in runs.itertuples(index=False):
            total.add_metric([project, status], n)
            entry = per_project.setdefault(project, {"last": 0, "running": 0, "stale": 0,
                                                     "interrupted": 0})
            entry["last"] = max(entry["last"], last or 0)
            entry["stale"] += n_stale
            if status in ("running", "interrupted"):
                entry[status] += n
        for project, e in sorted(per_project.items()):
            last_run.add_metric([project], e["last"])
            running.add_metric([project], e["running"])
            stale.add_metric([project], e["stale"])
            interrupted.add_metric([project], e["interrupted"])
        yield from (total, last_run, running, stale, interrupted)

        # One pass over the tasks: all-time totals per status, and the window's
        # durations and ratio per task (GROUPING SETS; finished attempts only).
        fin = "w AND status IN ('success', 'failed')"
        q = ", ".join(f"quantile_cont(duration_s, {x}) FILTER (WHERE {fin}) AS q{i}"
                      for i, x in enumerate(QUANTILES))
        stats = h.query(lambda a: f"""
            SELECT project, task, status, grouping(status) AS per_task, count(*) AS n_all,
                   max(started_s) FILTER (WHERE status = 'success') AS last_success,
                   count(duration_s) FILTER (WHERE {fin}) AS n,
                   sum(duration_s) FILTER (WHERE {fin}) AS total,
                   count(*) FILTER (WHERE w AND status = 'success') AS ok,
                   count(*) FILTER (WHERE {fin}) AS done,
                   arg_max(duration_s, started_s) FILTER (WHERE w AND duration_s IS NOT NULL)
                   AS last, {q}
            FROM (SELECT *, started_s >= {since} AS w FROM ({h.facts_sql(a, need=['project'])}))
            GROUP BY GROUPING SETS ((project, task, status), (project, task))""")
        task_total = CounterMetricFamily(f"{p}_tasks", "Task attempts recorded, by status.",
                                         labels=["project", "task", "status"])
        last_success = GaugeMetricFamily(f"{p}_task_last_success_timestamp_seconds",
                                         "Start time of the task's newest successful attempt.",
                                         labels=["project", "task"])
        by_status = stats[stats["per_task"] == 0]
        recent = stats[(stats["per_task"] == 1) & (stats["n"] + stats["done"] > 0)]
        for row in by_status.itertuples(index=False):
            task_total.add_metric([row.project, row.task, row.status], row.n_all)
        for row in stats[stats["per_task"] == 1].itertuples(index=False):
            if not pd.isna(row.last_success):
                last_success.add_metric([row.project, row.task], row.last_success)
        yield from (task_total, last_success)

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
            if row.done:
                ratio.add_metric([row.project, row.task], row.ok / row.done)
        yield from (summary, last_duration, ratio)

        disk = h.disk_usage()
        run_bytes = GaugeMetricFamily(f"{p}_run_disk_bytes",
                                      "Bytes of run directories on disk.", labels=["project"])
        cache_bytes = GaugeMetricFamily(f"{p}_cache_disk_bytes",
                                        "Bytes of the project's otto script cache.",
                                        labels=["project"])
        for row in disk.itertuples(index=False):
            if not pd.isna(row.run_bytes):
                run_bytes.add_metric([row.project], float(row.run_bytes))
            if not pd.isna(row.cache_bytes):
                cache_bytes.add_metric([row.project], float(row.cache_bytes))
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


def registry_for(h, window_s=DEFAULT_WINDOW_S, now=None):
    registry = CollectorRegistry()
    registry.register(HistoryCollector(h, window_s, now))
    return registry


def write_metrics(h, path, window_s=DEFAULT_WINDOW_S):
    """Write the metrics of *h* to *path*, atomically, for node_exporter."""
    path = os.path.abspath(str(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_to_textfile(path, registry_for(h, window_s))
    return path
