"""The questions users ask of their history; each answer is a DataFrame.

Aggregations run in DuckDB over the History's source (from a store, only the
columns and rows they need cross from SQLite), so a million tasks aggregate in
a fraction of a second without loading them into pandas. History's methods
call these; they build their SQL from the source's relations (``h._query``).
"""

__all__ = ["success_rate", "duration_stats", "duration_trend", "flaky", "failures",
           "failure_groups", "regressions", "critical_path", "compare", "disk_usage",
           "largest_runs", "disk_growth", "run_logs", "iter_run_logs", "grep", "normalize",
           "signature", "LogWarning", "GROUPABLE", "success_rate_sql", "flaky_sql", "quantiles_sql"]

import math
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from ottolytics.analyze import duck
from ottolytics.analyze.freq import epoch_period_sql, period_sql
from ottolytics.analyze.signatures import normalize, signature, signed
from ottolytics.core.errors import RunNotFound
from ottolytics.core.paths import dir_size
from ottolytics.store.statuses import OUTCOMES, sql_in


GROUPABLE = ("project", "task", "host", "status", "run_id")


def _by(by, allowed=GROUPABLE):
    cols = [by] if isinstance(by, str) else list(by or ())
    bad = [c for c in cols if c not in allowed]
    if bad:
        raise ValueError(f"by={bad[0]!r}: group by any of {', '.join(allowed)}")
    return cols


def success_rate_sql(status="status"):
    """The success rate as a DuckDB aggregate: successes / (successes + failures),
    NULL when neither. The one definition every figure of it uses (success_rate,
    the weekly report, ``ottolytics stats``): the SQL twin of
    ``ottolytics.store.statuses.success_rate``, which counts in Python (listings,
    the Prometheus ratio); tests/test_statuses.py holds that they agree."""
    return success_rate_of(f"count(*) FILTER (WHERE {status} = 'success')",
                           f"count(*) FILTER (WHERE {status} = 'failed')")


def success_rate_of(successes, failures):
    """The rate's formula over two counts (columns or expressions):
    successes / (successes + failures), NULL when neither; success_rate_sql is
    it over the rows' statuses."""
    return f"{successes} / nullif({successes} + {failures}, 0)"


def success_rate(h, by=("project", "task"), freq="W"):
    """Counts of runs, successes, failures, skips and interruptions, and the rate
    success / (success + failed), per group and period. Grouping by task counts
    task attempts; otherwise whole runs."""
    cols = _by(by)
    level = "task" in cols
    if level:
        # Counted in two steps: the task rows grouped by the keys, status and
        # whether the attempt is a first one (few groups, one count each), then
        # those counts pivoted; a third faster over ten million rows than one
        # filtered count per figure. The runs a task ran in are its first
        # attempts: no DISTINCT over a million keys.
        bucket = epoch_period_sql(freq)
        inner = ([f"{bucket} AS _bucket"] if bucket else []) + cols
        outer = (["to_timestamp(_bucket) AS period"] if bucket else []) + cols
        group = ", ".join(str(i + 1) for i in range(len(outer)))

        def count(where=None):
            picked = f" FILTER (WHERE {where})" if where else ""
            return f"coalesce(CAST(sum(_n){picked} AS BIGINT), 0)"
        figures = ", ".join(f"{count(f'status = {duck.sqlite_literal(status)}')} AS {name}"
                            for status, name in (("success", "successes"), ("failed", "failures"),
                                                 ("skipped", "skips"),
                                                 ("interrupted", "interrupted")))
        return h._query(lambda r: (
            f"SELECT {', '.join(outer)}, {count('_first')} AS runs, {count()} AS total, "
            f"{figures}, {success_rate_of('successes', 'failures')} AS rate "
            f"FROM (SELECT {', '.join(inner)}, status, attempt = 1 AS _first, count(*) AS _n "
            f"FROM ({r.facts(need=cols)}) GROUP BY ALL) "
            f"GROUP BY {group} ORDER BY {group}"))
    period = period_sql(freq)  # whole runs
    keys = ([f"{period} AS period"] if period else []) + cols
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    sql = lambda r: (  # noqa: E731
        f"SELECT {', '.join(keys)}, count(*) AS runs, count(*) AS total, "
        f"count(*) FILTER (WHERE status = 'success') AS successes, "
        f"count(*) FILTER (WHERE status = 'failed') AS failures, 0 AS skips, "
        f"count(*) FILTER (WHERE status = 'interrupted') AS interrupted, "
        f"{success_rate_sql()} AS rate "
        f"FROM ({r.runs()}) GROUP BY {group} ORDER BY {group}")
    return h._query(sql)


def duration_stats(h, by=("project", "task")):
    """count, mean, p50, p90, p95 and max of finished durations (seconds) per group."""
    cols = _by(by)
    if "task" in cols:
        source = lambda r: r.facts(need=cols)  # noqa: E731
    else:
        source = lambda r: r.runs()  # noqa: E731
    keys = ", ".join(cols) if cols else "'all' AS scope"
    group = ", ".join(str(i + 1) for i in range(max(1, len(cols))))
    sql = lambda r: (  # noqa: E731
        f"SELECT * EXCLUDE (q, max), {_quantile_columns('q', (0.5, 0.9, 0.95))}, max FROM ("
        f"SELECT {keys}, count(duration_s) AS count, avg(duration_s) AS mean, "
        f"{quantiles_sql('duration_s', (0.5, 0.9, 0.95))} AS q, max(duration_s) AS max "
        f"FROM ({source(r)}) WHERE status IN {sql_in(OUTCOMES)} "
        f"GROUP BY {group}) ORDER BY {group}")
    return h._query(sql)


def quantiles_sql(column, fractions):
    """Several quantiles of *column* as one aggregate (a list): one sort of each
    group's values, where a quantile_cont apiece kept and sorted a copy each.
    (Also the Prometheus summary's.)"""
    return f"quantile_cont({column}, [{', '.join(map(str, fractions))}])"


def _quantile_columns(name, fractions):
    """The list *name* as columns p50, p90 ... (one per fraction)."""
    return ", ".join(f"{name}[{i + 1}] AS p{round(q * 100)}" for i, q in enumerate(fractions))


def duration_trend(h, task, freq="D", project=None):
    """p25, p50, p75 and p95 of *task*'s successful durations per period and project.

    A task name can exist in several projects (``build`` usually does); each
    project gets its own rows, so their durations are never mixed. *project*
    (a name or a list) keeps only those projects.
    """
    period = period_sql(freq) or "date_trunc('day', started_at)"
    one = h.with_filters(task=[task] if isinstance(task, str) else task)
    if project is not None:
        one = one.with_filters(project=[project] if isinstance(project, str) else project)
    sql = lambda r: (  # noqa: E731
        f"SELECT * EXCLUDE (q), {_quantile_columns('q', (0.25, 0.5, 0.75, 0.95))} FROM ("
        f"SELECT {period} AS period, project, count(*) AS count, "
        f"{quantiles_sql('duration_s', (0.25, 0.5, 0.75, 0.95))} AS q "
        f"FROM ({r.facts(need=['project'])}) WHERE status = 'success' GROUP BY 1, 2) "
        f"ORDER BY 2, 1")
    return one._query(sql)


MAX_WINDOW = 100_000  # runs of one task looked back on by flaky


def _check_window(window, high):
    """ValueError unless *window* is a whole number of runs from 2 to *high*."""
    ok = (isinstance(window, (int, float)) and not isinstance(window, bool)
          and math.isfinite(window) and window == int(window))
    if not ok or not 2 <= window <= high:
        raise ValueError(f"window={window!r}: must be a whole number of runs from 2 to {high}")


def _check_ratio(min_ratio):
    """ValueError unless *min_ratio* is a finite number of at least 1."""
    try:
        ok = not isinstance(min_ratio, bool) and math.isfinite(float(min_ratio)) \
            and float(min_ratio) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"min_ratio={min_ratio!r}: must be a number of at least 1 (1.25 = "
                         "the median changed by a quarter either way)")


def flaky(h, window=20, every_task=False):
    """Tasks ranked by how flaky they are over their last *window* runs.

    * flip_rate: changes between success and failure from run to run / (runs - 1);
    * retry_passes: runs where an attempt failed and a later attempt passed;
    * mixed_hashes: script hashes that both passed and failed (same code, both outcomes);
    * score: the mean of flip_rate, retry_passes / runs and mixed_hashes / hashes.
    Only tasks that both passed and failed in the window, or passed on a retry,
    are flaky; *every_task* keeps every task with its figures (a task's own
    summary: ``stats.task_summary``).
    """
    _check_window(window, MAX_WINDOW)
    return h._query(lambda r: flaky_sql(
        f"({r.facts(need=['project', 'run_started_at'])})", window, every_task))


def flaky_sql(source, window, every_task=False):
    """flaky()'s SQL over *source*: a relation with project, task, run_key (what
    names a run: a number, or its id), run_started_at, attempt, status and
    script_hash."""
    # Each task's last runs are found without grouping every run: per task, the
    # keys of its latest rows (a heap of LATEST rows per task: max_by(..., n)),
    # which name its last `window` runs unless those runs had many attempts; a
    # task whose latest rows name fewer runs than that while it has more rows
    # (rare) takes the exact way, over its own rows only. Only the rows of the
    # runs found are then grouped by run. (Grouping all ten million (task, run)
    # pairs first took 2.3 GB and seconds.)
    # (t is written out where it is read, not made a CTE: DuckDB inlines a CTE by
    # copying its plan, which a sqlite scan cannot be, and materializing it would
    # hold ten million rows.)
    window = int(window)
    latest = 2 * window
    t = (f"(SELECT project, task, run_key, run_started_at, attempt, status, script_hash "
         f"FROM {source} WHERE status IN {sql_in(OUTCOMES)}) t")
    return f"""
        WITH heads AS (
            SELECT project, task, count(*) AS n,
                   max_by(run_key, coalesce(run_started_at, '-infinity'::TIMESTAMPTZ),
                          {latest}) AS keys
            FROM {t} GROUP BY project, task),
        named AS (
            SELECT project, task, n, key AS run_key, min(pos) AS pos
            FROM (SELECT project, task, n, unnest(keys) AS key,
                         generate_subscripts(keys, 1) AS pos FROM heads)
            GROUP BY ALL),
        enough AS (
            SELECT project, task FROM named GROUP BY project, task, n
            HAVING count(*) >= {window} OR n <= {latest}),
        quick AS (
            SELECT project, task, run_key FROM named SEMI JOIN enough USING (project, task)
            QUALIFY row_number() OVER (PARTITION BY project, task ORDER BY pos) <= {window}),
        exact AS (
            SELECT project, task, run_key FROM (
                SELECT project, task, run_key, any_value(run_started_at) AS run_started_at
                FROM {t} WHERE (project, task) IN (
                    SELECT (project, task) FROM heads ANTI JOIN enough USING (project, task))
                GROUP BY ALL)
            QUALIFY row_number() OVER (PARTITION BY project, task
                                       ORDER BY run_started_at DESC) <= {window}),
        recent_keys AS (SELECT * FROM quick UNION ALL SELECT * FROM exact),
        rows AS (SELECT t.* FROM {t} SEMI JOIN recent_keys k
                 ON t.task = k.task AND t.run_key = k.run_key AND t.project = k.project),
        recent AS (
            SELECT project, task, run_key, any_value(run_started_at) AS run_started_at,
                   arg_max(status, attempt)::VARCHAR AS outcome,
                   bool_or(status = 'failed') AND arg_max(status, attempt) = 'success' AS retry_pass
            FROM rows GROUP BY project, task, run_key),
        flips AS (
            SELECT project, task, count(*) AS runs,
                   count(*) FILTER (WHERE outcome = 'failed') AS failed_runs,
                   count(*) FILTER (WHERE outcome = 'success') AS _passed_runs,
                   count(*) FILTER (WHERE retry_pass) AS retry_passes,
                   CAST(sum(CASE WHEN prev IS NOT NULL AND prev <> outcome THEN 1 ELSE 0 END) AS BIGINT)
                       AS flips,
                   min(run_started_at) AS since
            FROM (SELECT *, lag(outcome) OVER (PARTITION BY project, task
                                              ORDER BY run_started_at) AS prev FROM recent)
            GROUP BY ALL),
        hashes AS (
            SELECT project, task, count(DISTINCT script_hash) AS hashes,
                   count(DISTINCT script_hash) FILTER (WHERE mixed) AS mixed_hashes
            FROM (SELECT project, task, script_hash,
                         bool_or(status = 'success') OVER w AND bool_or(status = 'failed') OVER w
                         AS mixed
                  FROM rows WHERE script_hash IS NOT NULL
                  WINDOW w AS (PARTITION BY project, task, script_hash))
            GROUP BY ALL)
        SELECT f.project, f.task, f.runs, f.failed_runs, f.flips,
               CASE WHEN f.runs > 1 THEN f.flips / (f.runs - 1) ELSE 0 END AS flip_rate,
               f.retry_passes, coalesce(hs.mixed_hashes, 0) AS mixed_hashes,
               coalesce(hs.hashes, 0) AS hashes, f.since,
               (CASE WHEN f.runs > 1 THEN f.flips / (f.runs - 1) ELSE 0 END
                + f.retry_passes / f.runs
                + coalesce(hs.mixed_hashes / nullif(hs.hashes, 0), 0)) / 3 AS score
        FROM flips f LEFT JOIN hashes hs USING (project, task)
        -- flaky: both passed and failed in the window (a task that only failed
        -- is broken, not flaky), or passed on a retry after failing
        WHERE {"true" if every_task else
               "(f.failed_runs > 0 AND f._passed_runs > 0) OR f.retry_passes > 0"}
        ORDER BY score DESC, flip_rate DESC, project, task"""


# -- failures -----------------------------------------------------------------

def _signed_failures(r, f):
    """The failed tasks (*f* keeps them) with the signature and message the
    mirror stored with each tail: none for an empty tail, as ``signed`` gives."""
    return f"""
        SELECT * EXCLUDE (_signature, _message) REPLACE (
                   CASE WHEN stderr_tail <> '' THEN _signature END AS signature,
                   coalesce(_message, '') AS message)
        FROM (SELECT *, NULL AS signature, NULL AS message FROM (
                  {r.source.tasks(r.scope, f, with_tail=True, signed=True)}))"""


def failures(h, since=None):
    """Failed task attempts, newest first, with exit code or signal, duration, stderr
    tail, log paths, a failure signature and its last line."""
    src = h.with_filters(since=since) if since is not None else h
    f = dict(src.filters, status=["failed"])
    if getattr(src._source, "signs_tails", False):
        # The mirror stored each tail's signature and message when it copied it.
        df = src._query(lambda r: f"SELECT * FROM ({_signed_failures(r, f)}) "
                                 "ORDER BY started_at DESC")
    else:
        df = src._query(lambda r: f"SELECT * FROM ({r.tasks(f=f, with_tail=True)}) "
                                 "ORDER BY started_at DESC")
        # Each distinct tail is normalized once (a failure repeats its tail), and
        # the last ones seen are remembered (signatures.signed) for the next question.
        codes, tails = pd.factorize(df["stderr_tail"], use_na_sentinel=True)
        signed_tails = [signed(t) for t in tails]
        df["signature"] = [signed_tails[c][0] if c >= 0 else None for c in codes]
        df["message"] = [signed_tails[c][1] if c >= 0 else "" for c in codes]
    cols = ["run_id", "project", "host", "task", "attempt", "started_at", "finished_at",
            "duration_s", "exit_code", "signal", "signature", "message", "stderr_tail",
            "stdout_path", "stderr_path", "script_hash"]
    return df[cols].reset_index(drop=True)


GROUP_COLUMNS = ["signature", "count", "tasks", "projects", "first_seen", "last_seen",
                 "message", "last_run_id", "exit_codes"]


def failure_groups_sql(source):
    """failure_groups' SQL over *source*: failed attempts with run_id, project, task,
    started_at, exit_code, signal, signature (null: no stderr kept) and message.
    Failures without a tail are grouped by task and exit code (or signal): their
    signature hashes "no stderr", the task and the message (not normalized:
    exit 3 and exit 4 differ)."""
    bare = ("CASE WHEN signal IS NOT NULL THEN 'killed by signal ' || signal || ', no stderr kept' "
            "WHEN exit_code IS NOT NULL THEN 'exit code ' || exit_code || ', no stderr kept' "
            "ELSE 'failed, no stderr kept' END")
    return f"""
        SELECT signature, count(*) AS count,
               string_agg(DISTINCT task, ', ' ORDER BY task) AS tasks,
               string_agg(DISTINCT project, ', ' ORDER BY project) AS projects,
               min(started_at) AS first_seen, max(started_at) AS last_seen,
               arg_max(message, started_at) AS message, arg_max(run_id, started_at) AS last_run_id,
               coalesce(array_to_string(list(DISTINCT exit_code ORDER BY exit_code)
                                        FILTER (WHERE exit_code IS NOT NULL), ', '), '')
               AS exit_codes
        FROM (SELECT run_id, project, task, started_at, exit_code,
                     coalesce(signature, substr(sha1('no stderr' || chr(0) || task || chr(0)
                                                     || ({bare})), 1, 12)) AS signature,
                     CASE WHEN signature IS NULL THEN {bare} ELSE message END AS message
              FROM (SELECT CAST(run_id AS VARCHAR) AS run_id, CAST(project AS VARCHAR) AS project,
                           CAST(task AS VARCHAR) AS task, started_at,
                           CAST(exit_code AS BIGINT) AS exit_code, CAST(signal AS BIGINT) AS signal,
                           CAST(signature AS VARCHAR) AS signature,
                           CAST(message AS VARCHAR) AS message
                    FROM {source}))
        GROUP BY signature
        ORDER BY count DESC, last_seen DESC, signature"""


def failure_groups(h, since=None):
    """Each distinct failure (by signature): how often, which tasks, first and last
    seen. Failures that kept no stderr are grouped by task and exit code (or
    signal), with a message such as ``exit code 3, no stderr kept``."""
    src = h.with_filters(since=since) if since is not None else h
    if getattr(src._source, "signs_tails", False):
        # The signatures are the mirror's: grouped where they are, nothing to pandas
        # but the groups.
        f = dict(src.filters, status=["failed"])
        return src._query(lambda r: failure_groups_sql(
            f"({_signed_failures(r, f)})"))[GROUP_COLUMNS]
    df = failures(h, since)[["run_id", "project", "task", "started_at", "exit_code", "signal",
                             "signature", "message"]]
    con = h._con.cursor()  # the frame grouped by the same SQL, beside the History's work
    try:
        con.register("_ottolytics_failures", df)
        con.execute("SET TimeZone = 'UTC'")
        return duck.to_pandas(con.execute(failure_groups_sql("_ottolytics_failures")))[
            GROUP_COLUMNS]
    finally:
        con.close()


# -- regressions ----------------------------------------------------------------

def _mann_whitney(a, b):
    """Two-sided Mann-Whitney U test (normal approximation, tie-corrected): (z, p)."""
    n1, n2 = len(a), len(b)
    combined = np.concatenate([a, b])
    order = combined.argsort(kind="mergesort")
    ranks = np.empty(len(combined))
    ranks[order] = np.arange(1, len(combined) + 1)
    values, inverse = np.unique(combined, return_inverse=True)
    if len(values) < len(combined):  # ties: give each its group's average rank
        ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(combined, return_counts=True)
    n = n1 + n2
    tie = (counts ** 3 - counts).sum() / (n * (n - 1)) if n > 1 else 0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        return 0.0, 1.0
    z = (u - n1 * n2 / 2) / sigma
    return z, math.erfc(abs(z) / math.sqrt(2))


_WEEK_S = 7 * 86400


def _latest_successes(h, n):
    """Each task's latest *n* successful attempts (project, task, run_id,
    started_at, duration_s), in time order. Sorting every success to number
    them took seconds at ten million tasks; instead the successes are counted
    per task and week first (one cheap aggregate), which tells from which week
    on each task has *n* of them, and only the rows from there on are ranked.
    Tasks with fewer than *n* in all keep every row (read by a second branch,
    so that the first can skip whole row groups by time)."""
    ok = "status = 'success' AND duration_s IS NOT NULL"
    weeks = h._query(lambda r: f"""
        SELECT project, task, max(w) FILTER (WHERE above >= {n}) AS cut FROM (
            SELECT project, task, w,
                   sum(k) OVER (PARTITION BY project, task ORDER BY w DESC) AS above
            FROM (SELECT project, task, floor(started_s / {_WEEK_S}) AS w, count(*) AS k
                  FROM ({r.facts(need=['project'])}) WHERE {ok} GROUP BY ALL))
        GROUP BY ALL""")
    if weeks.empty:
        return pd.DataFrame(columns=["project", "task", "run_id", "started_at", "duration_s"])
    cut = weeks["cut"].dropna()
    short = weeks.loc[weeks["cut"].isna(), ["project", "task"]]
    since = f"{float(cut.min()) * _WEEK_S!r}" if len(cut) else None
    branches = [f"SELECT {{cols}} FROM ({{facts}}) f WHERE {ok} AND started_s >= {since}"] \
        if since else []
    # The tasks with fewer are named by a registered table, never by literals in
    # the SQL (a name is untrusted: a NUL in it would end DuckDB's string).
    names = f"_ottolytics_short_{uuid.uuid4().hex}"
    if len(short):  # (their rows from *since* on are the first branch's)
        h._con.register(names, pa.Table.from_pandas(short, preserve_index=False))
        branches.append(f"SELECT {{cols}} FROM ({{facts}}) f SEMI JOIN {names} s "
                        f"ON f.project = s.project AND f.task = s.task WHERE {ok}"
                        + (f" AND started_s < {since}" if since else ""))
    cols = "f.project, f.task, f.run_key, f.started_at, f.duration_s"
    try:
        return h._query(lambda r: f"""
            WITH latest AS (
                SELECT * FROM ({" UNION ALL ".join(
                    b.format(cols=cols, facts=r.facts(need=['project'])) for b in branches)})
                QUALIFY row_number() OVER (PARTITION BY project, task
                                           ORDER BY started_at DESC) <= {n})
            SELECT l.project, l.task, k.run_id, l.started_at, l.duration_s
            FROM latest l JOIN ({r.run_keys()}) k USING (run_key)
            ORDER BY l.project, l.task, l.started_at, k.run_id""")
    finally:
        if len(short):
            h._con.unregister(names)


def regressions(h, task=None, window=12, min_ratio=1.25, max_p=1e-4, max_points=500):
    """Change points in each task's successful durations, strongest first.

    Method: a sliding two-window test. For every point of a task's series (its
    last *max_points* successful attempts, in time order) the *window*
    durations before it are compared with the *window* from it on, using a
    Mann-Whitney U test (robust to outliers and skew). A point is a change when
    p < *max_p* and the medians differ by at least *min_ratio* either way; of
    overlapping candidates the one with the largest |z| is kept. *window* is a
    whole number from 2 to max_points // 2 and *min_ratio* at least 1, else
    ValueError.
    """
    _check_window(window, max(2, int(max_points) // 2))
    _check_ratio(min_ratio)
    src = h.with_filters(task=[task] if isinstance(task, str) else task) if task else h
    data = _latest_successes(src, int(max_points))
    rows = []
    for (project, name), g in data.groupby(["project", "task"], sort=True):
        x = g["duration_s"].to_numpy(dtype=float)
        if len(x) < 2 * window:
            continue
        # Medians of the window ending before k and the window starting at k, for all k.
        rolling = pd.Series(x).rolling(window).median().to_numpy()
        candidates = []
        for k in range(window, len(x) - window + 1):
            mb, ma = rolling[k - 1], rolling[k + window - 1]
            if mb <= 0 or not (ma / mb >= min_ratio or mb / max(ma, 1e-12) >= min_ratio):
                continue
            z, p = _mann_whitney(x[k - window:k], x[k:k + window])
            if p < max_p:
                candidates.append((abs(z), k, mb, ma, p))
        taken = []
        for score, k, mb, ma, p in sorted(candidates, reverse=True):
            if all(abs(k - t) >= window for t in taken):
                taken.append(k)
                rows.append({"project": project, "task": name,
                             "run_id": g["run_id"].iloc[k], "changed_at": g["started_at"].iloc[k],
                             "median_before": mb, "median_after": ma, "ratio": ma / mb,
                             "p_value": p, "z": score,
                             "direction": "slower" if ma > mb else "faster"})
    cols = ["project", "task", "run_id", "changed_at", "median_before", "median_after", "ratio",
            "direction", "p_value", "z"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows)[cols].sort_values(["z"], ascending=False).reset_index(drop=True)


# -- one run ------------------------------------------------------------------

def _run_tasks(h, run):
    run = h.resolve(run)
    one = h.with_filters(run=[run], since=None, until=None, status=None)
    df = one.tasks()
    if df.empty:
        raise RunNotFound(f"run {run!r} has no tasks in {', '.join(h.paths)}")
    deps = one._query(lambda r: f"SELECT task, depends_on FROM ({r.deps()})")
    last = df.sort_values("attempt").groupby("task", as_index=False).tail(1)
    return last.set_index("task"), deps


def critical_path(h, run):
    """The chain of dependent tasks that bounds *run*'s wall time, first to last.

    Walk back from the task that finished last, each time to the dependency
    that finished last (the one it had to wait for); ``waited_s`` is the gap
    between that dependency's end and the task's start."""
    tasks, deps = _run_tasks(h, run)
    ends = tasks["finished_at"].fillna(tasks["started_at"])
    depends = deps.groupby("task")["depends_on"].apply(list).to_dict()
    current = ends.idxmax()
    chain = [current]
    while True:
        known = [d for d in depends.get(current, []) if d in tasks.index]
        if not known:
            break
        current = max(known, key=lambda d: ends[d])
        if current in chain:
            break  # a cycle in recorded deps: stop rather than loop
        chain.append(current)
    chain.reverse()
    out = tasks.loc[chain, ["attempt", "status", "started_at", "finished_at", "duration_s"]]
    out = out.reset_index()
    prev_end = ends.loc[chain].shift(1).reset_index(drop=True)
    out["waited_s"] = (out["started_at"] - prev_end).dt.total_seconds()
    out.insert(0, "run_id", h.resolve(run))
    return out


def compare(h, run_a, run_b):
    """Task by task: status and duration in *run_a* and *run_b*, and the change."""
    a, _ = _run_tasks(h, run_a)
    b, _ = _run_tasks(h, run_b)
    both = a[["status", "duration_s"]].merge(b[["status", "duration_s"]], how="outer",
                                              left_index=True, right_index=True,
                                              suffixes=("_a", "_b"))
    both["delta_s"] = both["duration_s_b"] - both["duration_s_a"]
    both["ratio"] = both["duration_s_b"] / both["duration_s_a"]
    both["status_changed"] = both["status_a"].astype("object") != both["status_b"].astype("object")
    return both.reset_index().rename(columns={"index": "task"})


# -- disk -----------------------------------------------------------------------

def disk_usage(h):
    """Per project, sizes as ``paths.dir_size`` defines them (apparent bytes of
    files and links; directories count 0), each either measured now or recorded:

    * ``runs``: runs in the store; ``recorded_bytes``: the sum of the sizes
      recorded for them (at run end, by sync, or by the last ``ottolytics usage``);
    * ``runs_on_disk`` and ``run_bytes``: those whose directory exists, and the
      size of those directories measured now -- what ``ottolytics usage``
      reports for the runs the store knows;
    * ``cache_bytes``: the project's otto script cache (``<project dir>/.cache``),
      measured now;
    * the largest run by recorded size, and the oldest and newest run."""
    df = h._query(lambda r: f"""
        SELECT project, count(*) AS runs, CAST(sum(size_bytes) AS BIGINT) AS recorded_bytes,
               arg_max(run_id, size_bytes) AS largest_run_id, max(size_bytes) AS largest_run_bytes,
               min(started_at) AS oldest_run, max(started_at) AS newest_run
        FROM ({r.runs()}) GROUP BY project""")
    dirs = h._query(lambda r: f"SELECT DISTINCT project, run_dir, source FROM ({r.runs()}) "
                             "WHERE run_dir IS NOT NULL")
    on_disk, measured, caches = {}, {}, {}
    seen = set()
    for project, run_dir, source in dirs.itertuples(index=False):
        if not isinstance(run_dir, str):
            continue
        if source == "otto":
            caches.setdefault(project, set()).add(os.path.join(os.path.dirname(run_dir), ".cache"))
        if run_dir in seen or not os.path.isdir(run_dir) or os.path.islink(run_dir):
            continue
        seen.add(run_dir)
        on_disk[project] = on_disk.get(project, 0) + 1
        measured[project] = measured.get(project, 0) + dir_size(run_dir)
    df["runs_on_disk"] = [on_disk.get(p, 0) for p in df["project"]]
    df["run_bytes"] = [measured.get(p, 0) for p in df["project"]]
    df["cache_bytes"] = [sum(dir_size(c) for c in caches[p]) if p in caches else pd.NA
                         for p in df["project"]]
    for col in ("runs_on_disk", "run_bytes"):
        df[col] = df[col].astype("int64")
    df["cache_bytes"] = df["cache_bytes"].astype("Int64")
    df = df.sort_values(["run_bytes", "recorded_bytes", "project"],
                        ascending=[False, False, True], na_position="last")
    return df[["project", "runs", "recorded_bytes", "runs_on_disk", "run_bytes", "cache_bytes",
               "largest_run_id", "largest_run_bytes", "oldest_run",
               "newest_run"]].reset_index(drop=True)


def largest_runs(h, n=10):
    """The *n* runs that take the most disk."""
    return h._query(lambda r: f"SELECT run_id, project, started_at, status, size_bytes, run_dir "
                              f"FROM ({r.runs()}) WHERE size_bytes IS NOT NULL "
                             f"ORDER BY size_bytes DESC LIMIT {int(n)}")


def disk_growth(h, freq="D"):
    """Bytes of run directories added per period and the running total, per project."""
    period = period_sql(freq) or "date_trunc('day', started_at)"
    return h._query(lambda r: f"""
        SELECT period, project, added_bytes,
               CAST(sum(added_bytes) OVER (PARTITION BY project ORDER BY period) AS BIGINT)
               AS total_bytes
        FROM (SELECT {period} AS period, project,
                     CAST(sum(coalesce(size_bytes, 0)) AS BIGINT) AS added_bytes
              FROM ({r.runs()}) GROUP BY 1, 2)
        ORDER BY period, project""")


# -- logs -------------------------------------------------------------------------

LOG_COLUMNS = ["task", "attempt", "stream", "seq", "at", "text", "source"]
GREP_COLUMNS = ["run_id", "task", "attempt", "stream", "path", "line", "text", "source"]


class LogWarning(UserWarning):
    """Some log files a history names were not read (see paths.open_log)."""


def _text(value):
    """A string cell as str, or None for None, NaN and pd.NA (pandas 2 and 3)."""
    return value if isinstance(value, str) else None


def _read_file_lines(f, max_bytes=None):
    with f:
        data = f.read() if max_bytes is None else f.read(max_bytes)
    return data.decode("utf-8", "replace").splitlines()


def _file_jobs(h, f):
    """(key, stream, path, home, stored, run_dir, source) for each stored log path."""
    from ottolytics.core.paths import task_path_from_stored
    # none from a source whose paths are other machines' (a Parquet dataset)
    df = h._query(lambda r: f"SELECT * FROM ({r.log_paths(f)})")
    jobs = []
    for r in df.itertuples(index=False):
        home = h.homes[int(r.store_index)]
        key = (r.run_id, r.task, int(r.attempt))
        for stream, stored in (("stdout", _text(r.stdout_stored)),
                               ("stderr", _text(r.stderr_stored))):
            if stored is not None:
                run_dir = _text(r.run_dir_stored)
                jobs.append((key, r.started_at, stream,
                             task_path_from_stored(stored, run_dir, home),
                             (stored, run_dir, _text(r.source), home, _text(r.run_id))))
    return jobs


def _open_job(job, regex=None):
    """(lines, refusal) for a file job; lines None when the file is missing. With
    *regex*, only the matching lines, as (number, text)."""
    from ottolytics.core.paths import LogRefused, open_task_log
    try:
        _path, f = open_task_log(*job[4])
    except LogRefused as exc:
        return None, str(exc)
    except OSError:
        return None, None
    try:
        lines = _read_file_lines(f)
        if regex is not None:
            lines = [(n, t) for n, t in enumerate(lines, 1) if regex.search(t)]
        return lines, None
    except OSError as exc:
        return None, f"{job[3]}: not read: {exc.strerror or exc}"


def _warn(refused):
    if refused:
        import warnings
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        warnings.warn(f"{len(refused)} log file(s) not read: {refused[0]}{more}", LogWarning,
                      stacklevel=3)


def _tails(h, f):
    """(run_id, task, attempt, started_at, tail) of the stored stderr tails."""
    return h._query(lambda r: f"SELECT * FROM ({r.tails(f)})")


def _pool():
    return ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2))


def _probe_job(job):
    """(True, None) when the file job can be opened now, else (False, refusal or
    None for a missing file); the file is closed again (it is streamed later)."""
    from ottolytics.core.paths import LogRefused, open_task_log
    try:
        _path, f = open_task_log(*job[4])
    except LogRefused as exc:
        return False, str(exc)
    except OSError:
        return False, None
    f.close()
    return True, None


def stream_file_lines(f, chunk=1 << 20):
    """The lines of the open binary log *f*, as ``splitlines()`` of the whole
    decoded text would give them, reading at most *chunk* bytes at a time (a
    line longer than that comes in pieces), so memory stays bounded."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with f:
        while True:
            raw = f.readline(chunk)
            text = decoder.decode(raw, final=not raw)
            if text:
                yield from text.splitlines()
            if not raw:
                return


def iter_run_logs(h, run, task=None):
    """run_logs without holding the output in memory: (run id, an iterator of
    (task, attempt, stream, seq, at, text, source) in run_logs' order, and the
    list of refusals, complete once the iterator is exhausted). Log files are
    read line by line as the iterator advances. Raises RunNotFound, and
    TaskNotFound (manage.runinfo) when the run has no task *task*."""
    uid, rows, refused = _log_rows(h, run, task, lazy=True)
    if task is not None and not rows:  # no output kept, or no such task
        names = sorted(set(h.with_filters(run=[uid], since=None, until=None, status=None,
                                          task=None).tasks()["task"]))
        if task not in names:
            from ottolytics.manage.runinfo import no_such_task
            raise no_such_task(uid, task, names)

    def lines():
        from ottolytics.core.paths import LogRefused, open_task_log
        for r in rows:
            if r[9] != "file":
                yield (r[1], r[2], r[8], r[5], r[6], r[7], r[9])
                continue
            job = r[7]
            try:
                _path, f = open_task_log(*job[4])
            except LogRefused as exc:
                refused.append(str(exc))
                continue
            except OSError:
                continue
            try:
                for number, text in enumerate(stream_file_lines(f), 1):
                    yield (r[1], r[2], r[8], number, pd.NaT, text, "file")
            except OSError as exc:
                refused.append(f"{job[3]}: not read: {exc.strerror or exc}")
    return uid, lines(), refused


def run_logs(h, run, task=None):
    """A run's output, task by task. For each task attempt and stream: the lines of
    its log file when the read rule (paths.open_log) allows it; else its stored
    log fragments (as recorded, one row per fragment); else, for stderr, the lines
    of its stored stderr tail. Fragments that belong to no task come first.
    ``source`` says which ("file", "fragments", "stderr tail"). Files the rule
    refuses are listed in ``df.attrs["refused"]`` and in a LogWarning."""
    uid, rows, refused = _log_rows(h, run, task)
    df = pd.DataFrame([(r[1], r[2], r[8], r[5], r[6], r[7], r[9]) for r in rows],
                      columns=LOG_COLUMNS)
    df["attempt"] = df["attempt"].astype("Int64")
    df["seq"] = df["seq"].astype("int64")
    df["at"] = pd.to_datetime(df["at"], utc=True)
    df.attrs["refused"] = refused
    _warn(refused)
    return df


def _log_rows(h, run, task=None, lazy=False):
    """(run id, sorted rows, refusals) for run_logs; with *lazy*, each readable
    log file is one row whose text is its file job (streamed by iter_run_logs)."""
    uid = h.resolve(run)
    one = h.with_filters(run=[uid], task=[task] if task else None, since=None, until=None,
                         status=None)
    rows, refused, done = [], [], set()
    jobs = _file_jobs(one, one.filters)
    with _pool() as pool:
        for job, (lines, problem) in zip(jobs, pool.map(_probe_job if lazy else _open_job,
                                                        jobs)):
            if problem:
                refused.append(problem)
            if lines is None or lines is False:
                continue
            key, started, stream = job[0], job[1], job[2]
            done.add(key + (stream,))
            if lazy:
                rows.append((started, key[1], key[2], 1, stream == "stderr", 0, pd.NaT,
                             job, stream, "file"))
                continue
            for number, text in enumerate(lines, 1):
                rows.append((started, key[1], key[2], 1, stream == "stderr", number, pd.NaT,
                             text, stream, "file"))
    frags = one._query(lambda r: f"SELECT l.task, l.attempt, l.stream, l.seq, l.\"at\", l.text, "
                                f"t.started_at FROM ({r.logs()}) l LEFT JOIN "
                                f"(SELECT task, attempt, min(started_at) AS started_at FROM "
                                f"({r.tasks()}) GROUP BY ALL) t "
                                f"USING (task, attempt)")
    for r in frags.itertuples(index=False):
        name = _text(r.task)
        if task is not None and name != task:
            continue
        attempt = None if pd.isna(r.attempt) else int(r.attempt)
        if (uid, name, attempt, r.stream) in done:
            continue
        rows.append((r.started_at, name, attempt, 0, False, int(r.seq), r.at, r.text,
                     r.stream, "fragments"))
    have_frags = {(uid, _text(r.task), None if pd.isna(r.attempt) else int(r.attempt),
                   r.stream) for r in frags.itertuples(index=False)}
    tails = _tails(one, one.filters)
    for r in tails.itertuples(index=False):
        key = (uid, r.task, int(r.attempt), "stderr")
        tail = _text(r.tail)
        if key in done or key in have_frags or tail is None:
            continue
        if task is not None and r.task != task:
            continue
        for number, text in enumerate(tail.splitlines(), 1):
            rows.append((r.started_at, r.task, int(r.attempt), 2, True, number, pd.NaT, text,
                         "stderr", "stderr tail"))
    # Run-level fragments first, then tasks by start; within one, fragments as
    # recorded, then stdout before stderr, line by line.
    rows.sort(key=lambda r: (r[1] is not None, pd.Timestamp(r[0]).value if r[0] is not None
                             and not pd.isna(r[0]) else 0, r[1] or "", r[2] or 0, r[3],
                             r[4], r[5]))
    return uid, rows, refused


def grep(h, pattern, since=None, task=None, project=None, max_matches=10_000):
    """Lines matching the regular expression *pattern* (Python's ``re``) in the logs
    the history holds, newest task first: its log files (where the read rule
    allows), else its stored log fragments, else its stored stderr tail (where a
    failure's ImportError usually is). Columns: run_id, task, attempt, stream,
    path (the file, or None), line (in the file, the joined fragments or the
    tail), text, source. Refused files are in ``df.attrs["refused"]`` and a
    LogWarning."""
    regex = re.compile(pattern)
    src = h.with_filters(since=since if since is not None else h.filters["since"],
                         task=[task] if isinstance(task, str) else (task or h.filters["task"]),
                         project=[project] if isinstance(project, str)
                         else (project or h.filters["project"]))
    found, refused, done = [], [], set()

    def match(started, key, stream, path, lines, source):
        for number, text in enumerate(lines, 1):
            if regex.search(text):
                found.append((started, key[0], key[1], key[2], stream, path, number, text,
                              source))

    jobs = sorted(_file_jobs(src, src.filters), key=lambda j: j[1], reverse=True)
    with _pool() as pool:
        for job, (lines, problem) in zip(jobs, pool.map(lambda j: _open_job(j, regex), jobs)):
            if problem:
                refused.append(problem)
            if lines is not None:
                done.add(job[0] + (job[2],))
                found.extend((job[1], *job[0], job[2], job[3], n, t, "file") for n, t in lines)
            if len(found) >= max_matches:
                break
    frags = src._query(lambda r: f"SELECT run_id, task, attempt, stream, "
                                f"string_agg(text, '' ORDER BY seq) AS text, min(\"at\") AS "
                                f"started_at FROM ({r.logs()}) GROUP BY ALL")
    for r in frags.itertuples(index=False):
        key = (r.run_id, _text(r.task), None if pd.isna(r.attempt) else int(r.attempt))
        if key + (r.stream,) not in done and _text(r.text):
            done.add(key + (r.stream,))
            match(r.started_at, key, r.stream, None, r.text.splitlines(), "fragments")
    tails = _tails(src, src.filters)
    for r in tails.itertuples(index=False):
        key = (r.run_id, r.task, int(r.attempt))
        if key + ("stderr",) not in done and _text(r.tail):
            match(r.started_at, key, "stderr", None, r.tail.splitlines(), "stderr tail")
    found.sort(key=lambda r: (-(pd.Timestamp(r[0]).value if r[0] is not None
                                and not pd.isna(r[0]) else 0), r[1], r[2] or "", r[3] or 0,
                              r[4], r[6]))
    df = pd.DataFrame([r[1:] for r in found[:max_matches]], columns=GREP_COLUMNS)
    df["attempt"] = df["attempt"].astype("Int64")
    df["line"] = df["line"].astype("int64")
    df.attrs["refused"] = refused
    _warn(refused)
    return df
