"""The weekly report's frame (``History.weekly_report``): one row per project
and task for an ISO week; ``ottolytics report weekly`` writes it as CSV
(``export/report.py``).

Time zone rule: a week runs from Monday 00:00 to the next Monday 00:00 in the
machine's local time zone (``TZ``), and runs count by when they started. The
default week is the last complete one: the week before the current local week.
"""

__all__ = ["weekly_report", "COLUMNS", "parse_week", "last_complete_week", "week_label"]

import uuid
from datetime import date, datetime, timedelta

import pandas as pd

from ottolytics.analyze.analytics import flaky_sql, success_rate_sql
from ottolytics.store.statuses import OUTCOMES, sql_in

COLUMNS = ["week", "week_start", "week_end", "project", "task", "runs", "successes",
           "failures", "skips", "success_rate", "p50_s", "p95_s", "prev_success_rate",
           "rate_delta", "prev_p50_s", "p50_ratio", "flaky_score", "top_failure_signature",
           "top_failure_count", "top_failure_message"]


def parse_week(text):
    """``"2026-W47"`` -> the Monday of that ISO week (a date). Raises ValueError."""
    try:
        year, _, number = str(text).upper().partition("-W")
        return date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise ValueError(f"week {text!r}: use an ISO week such as 2026-W47") from None


def last_complete_week(now=None):
    """The Monday of the last complete ISO week in local time."""
    today = (now or datetime.now()).date()
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(days=7)


def week_label(monday):
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _local_midnight(day):
    return datetime(day.year, day.month, day.day).astimezone()  # the local zone, DST-aware


def weekly_report(h, week=None):
    """The report frame for *week* (``"2026-W47"``, a date in that week, or None
    for the last complete week). Columns as in COLUMNS; empty when nothing ran."""
    if week is None:
        monday = last_complete_week()
    elif isinstance(week, (date, datetime)):
        d = week.date() if isinstance(week, datetime) else week
        monday = d - timedelta(days=d.weekday())
    else:
        monday = parse_week(week)
    start, end = _local_midnight(monday), _local_midnight(monday + timedelta(days=7))
    prev_start = _local_midnight(monday - timedelta(days=7))
    keys = ["project", "task"]
    # The two weeks' task rows cross from SQLite once, into a temp table that
    # every figure below is computed from (each separate filtered read costs).
    span = h.with_filters(since=prev_start, until=end)
    table = f"weekly_{uuid.uuid4().hex}"
    span._run(lambda r: (
        f"CREATE TEMP TABLE {table} AS SELECT *, run_key AS run_id FROM "
        f"({r.facts(need=['project', 'run_started_at'])})"), lambda result: None)
    try:
        fin = f"status IN {sql_in(OUTCOMES)}"
        stats = h._local(f"""
            SELECT project, task,
                   -- a task of unknown start (rows are untrusted) counts in its run's week
                   coalesce(started_s >= {start.timestamp()},
                            epoch(run_started_at) >= {start.timestamp()}, false) AS this_week,
                   count(*) FILTER (WHERE attempt = 1) AS runs,
                   count(*) FILTER (WHERE status = 'success') AS successes,
                   count(*) FILTER (WHERE status = 'failed') AS failures,
                   count(*) FILTER (WHERE status = 'skipped') AS skips,
                   {success_rate_sql()} AS success_rate,
                   quantile_cont(duration_s, 0.5) FILTER (WHERE {fin}) AS p50_s,
                   quantile_cont(duration_s, 0.95) FILTER (WHERE {fin}) AS p95_s
            FROM {table} GROUP BY ALL""")
        # Flakiness over the last 20 runs up to the week's end, looking back two weeks.
        flaky = h._local(flaky_sql(table, 20))[keys + ["score"]]
    finally:
        h._local(f"DROP TABLE IF EXISTS {table}")
    rates = stats[stats["this_week"]].drop(columns="this_week")
    if rates.empty:
        return pd.DataFrame(columns=COLUMNS)
    before = stats[~stats["this_week"]][keys + ["success_rate", "p50_s"]].rename(
        columns={"success_rate": "prev_success_rate", "p50_s": "prev_p50_s"})
    failures = h.with_filters(since=start, until=end).failures()
    df = (rates.merge(before, on=keys, how="left").merge(flaky, on=keys, how="left")
          .rename(columns={"score": "flaky_score"}))
    df["flaky_score"] = df["flaky_score"].fillna(0.0)
    df["rate_delta"] = df["success_rate"] - df["prev_success_rate"]
    df["p50_ratio"] = df["p50_s"] / df["prev_p50_s"]
    if not failures.empty:
        top = (failures.dropna(subset=["signature"])
               .groupby(keys + ["signature"], as_index=False)
               .agg(top_failure_count=("run_id", "size"), top_failure_message=("message", "last"))
               .sort_values(keys + ["top_failure_count", "signature"],
                            ascending=[True, True, False, True])
               .drop_duplicates(keys)
               .rename(columns={"signature": "top_failure_signature"}))
        df = df.merge(top, on=keys, how="left")
    else:
        df["top_failure_signature"] = df["top_failure_message"] = None
        df["top_failure_count"] = 0
    df["top_failure_count"] = df["top_failure_count"].fillna(0).astype("int64")
    df["week"] = week_label(monday)
    df["week_start"] = start.isoformat()
    df["week_end"] = end.isoformat()
    return df[COLUMNS].sort_values(keys).reset_index(drop=True)
