"""``ottolytics stats``: the overall figures, the busiest tasks, and one task's
trend by week, computed in DuckDB over a History (``h.with_filters(since=...)``
picks the period)."""

import uuid

import pandas as pd


def _facts(h, source, a, need=("project",)):
    """The task rows to aggregate: a temp table stats() made, or the store's."""
    return source or f"({h.facts_sql(a, need=list(need))})"


def overall(h, source=None):
    """One row: runs, tasks, run success rate, average and p95 run duration, and
    task attempts' success rate. *source* names a table of h's facts, if made."""
    runs = h.query(lambda a: f"""
        SELECT count(*) AS runs,
               count(*) FILTER (WHERE status = 'success') AS successes,
               count(*) FILTER (WHERE status = 'failed') AS failures,
               count(*) FILTER (WHERE status = 'running') AS running,
               count(*) FILTER (WHERE status = 'success')
                   / nullif(count(*) FILTER (WHERE status IN ('success', 'failed')), 0)
                   AS success_rate,
               avg(duration_s) FILTER (WHERE status <> 'running') AS avg_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status <> 'running')
                   AS p95_duration_s,
               min(started_at) AS first_run, max(started_at) AS last_run
        FROM ({h.runs_sql(a)})""")
    tasks = h.query(lambda a: f"""
        SELECT count(*) AS tasks,
               count(*) FILTER (WHERE status = 'success')
                   / nullif(count(*) FILTER (WHERE status IN ('success', 'failed')), 0)
                   AS task_success_rate
        FROM {_facts(h, source, a, need=())}""")
    return pd.concat([runs, tasks], axis=1)


def top_tasks(h, n=10, source=None):
    """The *n* tasks with the most attempts: project, task, total, success,
    failed, success_rate, avg_duration_s, p95_duration_s."""
    return h.query(lambda a: f"""
        SELECT project, task, count(*) AS total,
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'success')
                   / nullif(count(*) FILTER (WHERE status IN ('success', 'failed')), 0)
                   AS success_rate,
               avg(duration_s) FILTER (WHERE status IN ('success', 'failed')) AS avg_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status IN ('success', 'failed'))
                   AS p95_duration_s
        FROM {_facts(h, source, a)}
        GROUP BY project, task ORDER BY total DESC, project, task LIMIT {int(n)}""")


def task_trend(h, task, source=None):
    """*task*'s figures per ISO week (weeks start Monday, UTC): runs, success,
    failed, success_rate, p50 and p95 duration."""
    from ottolytics.analyze.duck import sqlite_literal
    one = h.with_filters(task=[task])
    where = f" WHERE task = {sqlite_literal(task)}" if source else ""
    return one.query(lambda a: f"""
        SELECT date_trunc('week', started_at) AS week, project,
               count(*) FILTER (WHERE attempt = 1) AS runs,
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'success')
                   / nullif(count(*) FILTER (WHERE status IN ('success', 'failed')), 0)
                   AS success_rate,
               quantile_cont(duration_s, 0.5) FILTER (WHERE status IN ('success', 'failed'))
                   AS p50_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status IN ('success', 'failed'))
                   AS p95_duration_s
        FROM {_facts(one, source, a)}{where}
        GROUP BY ALL ORDER BY week, project""")


def stats(h, task=None, n=10):
    """Everything ``ottolytics stats`` shows: {"overall", "top", "trend"} frames
    ("trend" only with *task*). The period's task rows cross from SQLite once,
    into a temp table that all three read."""
    table = f"stats_{uuid.uuid4().hex}"
    h.stores.query(h.con, lambda a: f"CREATE TEMP TABLE {table} AS SELECT * FROM "
                   f"({h.facts_sql(a, need=['project'])})", lambda r: None)
    try:
        result = {"overall": overall(h, table), "top": top_tasks(h, n, table)}
        if task:
            result["trend"] = task_trend(h, task, table)
    finally:
        h.con.execute(f"DROP TABLE IF EXISTS {table}")
    return result
