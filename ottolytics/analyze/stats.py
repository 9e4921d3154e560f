"""``ottolytics stats``: the overall figures, the busiest tasks, and one task's
trend by week, computed in DuckDB over a History (``h.with_filters(since=...)``
picks the period). Built on the public surface alone: ``h.sql`` over its views."""

__all__ = ["stats", "overall", "top_tasks", "task_trend", "task_summary"]

import uuid

import pandas as pd

from ottolytics.analyze.analytics import flaky as flaky_figures, success_rate_sql
from ottolytics.analyze.duck import sqlite_literal
from ottolytics.store.statuses import OUTCOMES, sql_in

# Attempts finished with an outcome: what durations count.
_FINISHED = sql_in(OUTCOMES)


def _facts(source):
    """The task rows to aggregate: a temp table stats() made, or h.sql's lean
    ``attempts`` view."""
    return source or "attempts"


def overall(h, source=None):
    """One row: runs, tasks, run success rate, average and p95 run duration, and
    task attempts' success rate. *source* names a table of h's facts, if made."""
    runs = h.sql(f"""
        SELECT count(*) AS runs,
               count(*) FILTER (WHERE status = 'success') AS successes,
               count(*) FILTER (WHERE status = 'failed') AS failures,
               count(*) FILTER (WHERE status = 'running') AS running,
               {success_rate_sql()} AS success_rate,
               avg(duration_s) FILTER (WHERE status <> 'running') AS avg_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status <> 'running')
                   AS p95_duration_s,
               min(started_at) AS first_run, max(started_at) AS last_run
        FROM runs""")
    tasks = h.sql(f"""
        SELECT count(*) AS tasks, {success_rate_sql()} AS task_success_rate
        FROM {_facts(source)}""")
    return pd.concat([runs, tasks], axis=1)


def top_tasks(h, n=10, source=None):
    """The *n* tasks with the most attempts: project, task, total, success,
    failed, success_rate, avg_duration_s, p95_duration_s."""
    return h.sql(f"""
        SELECT project, task, count(*) AS total,
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               {success_rate_sql()} AS success_rate,
               avg(duration_s) FILTER (WHERE status IN {_FINISHED}) AS avg_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status IN {_FINISHED})
                   AS p95_duration_s
        FROM {_facts(source)}
        GROUP BY project, task ORDER BY total DESC, project, task LIMIT {int(n)}""")


def task_trend(h, task, source=None):
    """*task*'s figures per ISO week (weeks start Monday, UTC): runs, success,
    failed, success_rate, p50 and p95 duration."""
    one = h.with_filters(task=[task])
    where = f" WHERE task = {sqlite_literal(task)}" if source else ""
    return one.sql(f"""
        SELECT date_trunc('week', started_at) AS week, project,
               count(*) FILTER (WHERE attempt = 1) AS runs,
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               {success_rate_sql()} AS success_rate,
               quantile_cont(duration_s, 0.5) FILTER (WHERE status IN {_FINISHED})
                   AS p50_duration_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status IN {_FINISHED})
                   AS p95_duration_s
        FROM {_facts(source)}{where}
        GROUP BY ALL ORDER BY week, project""")


def stats(h, task=None, n=10):
    """Everything ``ottolytics stats`` shows: {"overall", "top", "trend"} frames
    ("trend" only with *task*). The period's task rows are read once, into a
    temp table on the History's connection that all three read."""
    table = f"stats_{uuid.uuid4().hex}"
    h.sql(f"CREATE TEMP TABLE {table} AS SELECT project, task, status, attempt, started_at, "
          f"duration_s FROM attempts")
    try:
        result = {"overall": overall(h, table), "top": top_tasks(h, n, table)}
        if task:
            result["trend"] = task_trend(h, task, table)
    finally:
        h.sql(f"DROP TABLE IF EXISTS {table}")
    return result


def task_summary(h, task, flaky_window=20):
    """One task's reliability and speed over *h*'s period and projects (its
    filters), as a dict: runs (first attempts), attempts, successes, failures,
    skips, interrupted, success_rate (of finished attempts), p50 and p95 duration
    of the successful ones, last_run (a Timestamp), and flip_rate, retry_passes
    and flaky_score over its last *flaky_window* runs (``h.flaky``'s figures, kept
    for any task: 0 for one that never flipped, passing or failing throughout). When the task
    has no attempts there, attempts is 0 and other_tasks names up to 20 tasks that
    do in that period, in any project (what the MCP tool ``task_stats`` answers)."""
    one = h.with_filters(task=[task])
    row = one.sql(f"""
        SELECT count(*) FILTER (WHERE attempt = 1) AS runs, count(*) AS attempts,
               count(*) FILTER (WHERE status = 'success') AS successes,
               count(*) FILTER (WHERE status = 'failed') AS failures,
               count(*) FILTER (WHERE status = 'skipped') AS skips,
               count(*) FILTER (WHERE status = 'interrupted') AS interrupted,
               {success_rate_sql()} AS success_rate,
               quantile_cont(duration_s, 0.5) FILTER (WHERE status = 'success') AS p50_s,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status = 'success') AS p95_s,
               max(started_at) AS last_run
        FROM attempts""").iloc[0]
    if not row["attempts"]:
        period = h.with_filters(task=None, project=None)  # any project's, as a hint
        known = period.sql("SELECT DISTINCT task FROM attempts "
                           "ORDER BY task LIMIT 20")["task"].tolist()
        return {"attempts": 0, "other_tasks": known}
    # every task's figures, a task that only failed (or never did) included:
    # its flip rate is 0, not unknown
    flaky = flaky_figures(one, flaky_window, every_task=True).sort_values(
        "runs", ascending=False)
    top = flaky.iloc[0] if len(flaky) else None
    counts = {k: int(row[k]) for k in ("runs", "attempts", "successes", "failures", "skips",
                                       "interrupted")}
    return {**counts,
            "success_rate": _number(row["success_rate"]),
            "p50_duration_s": _number(row["p50_s"]), "p95_duration_s": _number(row["p95_s"]),
            "last_run": None if pd.isna(row["last_run"]) else pd.Timestamp(row["last_run"]),
            "flip_rate": _number(top["flip_rate"]) if top is not None else None,
            "retry_passes": int(top["retry_passes"]) if top is not None else 0,
            "flaky_score": _number(top["score"]) if top is not None else None}


def _number(value):
    """A float, or None for a missing or NaN one."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value
