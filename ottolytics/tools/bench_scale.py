"""``ottolytics bench --scale 100k|1M|10M``: the read engine and the Parquet
dataset over a year of a busy fleet, each figure beside a limit measured in the
same run (the same aggregate written by hand in DuckDB, over the SQLite store
and over one Parquet file of the tasks).

The store is ``synth --runs N --tasks-per-run 20 --days 365 --seed 7`` (10M
tasks: 500,000 runs), synthesized once and kept in the work directory
(``--work DIR``, else ``$OTTOLYTICS_BENCH_WORK``, else
``~/.cache/ottolytics/bench``): 10M takes minutes and 1.7 GB. Every figure is
taken in a fresh child process (its peak RSS is the child's ``VmHWM``); times
are in-process, from ``open()`` to the answer, imports excluded.
"""

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCALES = {"100k": 5_000, "1M": 50_000, "10M": 500_000}  # runs of TASKS_PER_RUN tasks
TASKS_PER_RUN, DAYS, SEED = 20, 365, 7
ENV = "OTTOLYTICS_BENCH_WORK"
RSS_GOAL_MB = 1024
NEW_RUNS = 1000  # the incremental export's new runs

# Each child prints one JSON line; the prelude gives it its peak RSS.
_PRELUDE = """
import json, sys, time
def peak_mb(field='VmHWM'):
    return int([l.split()[1] for l in open('/proc/self/status')
                if l.startswith(field)][0]) / 1024
"""

_ANALYTIC = """
import ottolytics.analyze.history
import ottolytics
db, name, run_a, run_b = sys.argv[1:5]
calls = {
    "success_rate": lambda h: h.success_rate(by=("task",), freq="W"),
    "duration_stats": lambda h: h.duration_stats(),
    "duration_trend": lambda h: h.duration_trend("test", freq="W"),
    "flaky": lambda h: h.flaky(),
    "failures": lambda h: h.failures(),
    "failure_groups": lambda h: h.failure_groups(),
    "regressions": lambda h: h.regressions(),
    "compare": lambda h: h.compare(run_a, run_b),
    "critical_path": lambda h: h.critical_path(run_b),
    "disk_usage": lambda h: h.disk_usage(),
}
t0 = time.perf_counter()
h = ottolytics.open(db)
calls[name](h)
cold = time.perf_counter() - t0
t0 = time.perf_counter()
calls[name](h)
warm = time.perf_counter() - t0
h.keep_answers = False  # computed again over the warm History: the engine's own time
t0 = time.perf_counter()
calls[name](h)
again = time.perf_counter() - t0
print(json.dumps({"cold": cold, "warm": warm, "again": again, "rss": peak_mb()}))
"""

# success_rate(by=("task",), freq="W") by hand: weekly successes and failures
# per task name, over the store's tasks table or one Parquet file of it.
_HAND_RATE = """
import duckdb
import pandas
from ottolytics.analyze import duck
src, kind = sys.argv[1:3]
t0 = time.perf_counter()
con = duck.connect() if kind == "sqlite" else duckdb.connect()
if kind == "sqlite":
    con.execute(f"ATTACH '{src}' AS s (TYPE sqlite, READ_ONLY)")
    table = "s.tasks"
else:
    table = f"read_parquet('{src}')"
con.execute(f\"\"\"
    SELECT date_trunc('week', to_timestamp(started_at)) AS period, name AS task,
           count(*) FILTER (WHERE status = 'success') AS successes,
           count(*) FILTER (WHERE status = 'failed') AS failures,
           successes / nullif(successes + failures, 0) AS rate
    FROM {table} GROUP BY ALL\"\"\").df()
print(json.dumps({"time": time.perf_counter() - t0, "rss": peak_mb()}))
"""

_ONE_FILE = """
from ottolytics.analyze import duck
src, out = sys.argv[1:3]
t0 = time.perf_counter()
con = duck.connect()
con.execute(f"ATTACH '{src}' AS s (TYPE sqlite, READ_ONLY)")
con.execute(f"COPY (SELECT * FROM s.tasks) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
print(json.dumps({"time": time.perf_counter() - t0, "rss": peak_mb()}))
"""

_DATASET_RATE = """
import ottolytics.analyze.history
import ottolytics
t0 = time.perf_counter()
ottolytics.open(sys.argv[1]).success_rate(by=("task",), freq="W")
print(json.dumps({"time": time.perf_counter() - t0, "rss": peak_mb()}))
"""

_EXPORT = """
import ottolytics.analyze.history
import ottolytics
t0 = time.perf_counter()
summary = ottolytics.open(sys.argv[1]).to_parquet(sys.argv[2])
print(json.dumps({"time": time.perf_counter() - t0, "rss": peak_mb(),
                  "written": summary["written"], "unchanged": summary["unchanged"]}))
"""

_TASKS = """
import ottolytics.analyze.history
import ottolytics
before = peak_mb('VmRSS')
t0 = time.perf_counter()
df = ottolytics.open(sys.argv[1]).tasks()
took = time.perf_counter() - t0
print(json.dumps({"time": took, "rss": peak_mb(), "grew": peak_mb() - before,
                  "rows": len(df), "frame": df.memory_usage(deep=True).sum() / 2**20}))
"""

# h.tasks() with one filter, in a fresh process: the store's last 7 days, one
# project, one task (the rows each returns are a small share of the store).
_TASKS_FILTERED = """
import sqlite3
import ottolytics.analyze.history
import ottolytics
db, kind = sys.argv[1:3]
conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
newest = conn.execute("SELECT max(started_at) FROM runs").fetchone()[0]
project = conn.execute("SELECT p.name FROM projects p JOIN runs r ON r.project_id = p.id "
                       "ORDER BY r.id DESC LIMIT 1").fetchone()[0]
task = conn.execute("SELECT name FROM tasks ORDER BY id DESC LIMIT 1").fetchone()[0]
conn.close()
given = {"since": {"since": newest - 7 * 86400}, "project": {"project": project},
         "task": {"task": task}, "none": {"since": newest + 86400}}[kind]
t0 = time.perf_counter()
df = ottolytics.open(db, **given).tasks()
print(json.dumps({"time": time.perf_counter() - t0, "rows": len(df), "rss": peak_mb()}))
"""

# The same rows and columns as h.tasks(), the plain pandas way.
_READ_SQL = """
import sqlite3
import pandas as pd
before = peak_mb('VmRSS')
t0 = time.perf_counter()
conn = sqlite3.connect(sys.argv[1])
df = pd.read_sql(
    "SELECT r.uid AS run_id, p.name AS project, r.host, t.name AS task, t.attempt, "
    "t.status, t.started_at, t.finished_at, t.finished_at - t.started_at AS duration_s, "
    "t.exit_code, t.signal, t.cpu_user_s, t.cpu_system_s, t.peak_rss_bytes, t.script_hash, "
    "t.script_path, t.stdout_path, t.stderr_path, t.derived, r.started_at AS run_started_at "
    "FROM tasks t JOIN runs r ON r.id = t.run_id JOIN projects p ON p.id = r.project_id",
    conn)
took = time.perf_counter() - t0
print(json.dumps({"time": took, "rss": peak_mb(), "grew": peak_mb() - before,
                  "rows": len(df), "frame": df.memory_usage(deep=True).sum() / 2**20}))
"""

# The cron case: new runs in the store's current month, on one of its hosts (the
# synthetic history ends on a fixed day, so they are moved there after recording).
_ADD_RUNS = """
import sqlite3
import ottolytics
db, n = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(db)
last, host = conn.execute("SELECT started_at, host FROM runs ORDER BY started_at DESC").fetchone()
top = conn.execute("SELECT max(id) FROM runs").fetchone()[0]
conn.close()
rec = ottolytics.Recorder(db)
for i in range(n):
    with rec.run("bench") as run:
        for j in range(5):
            with run.task(f"t{j}"):
                pass
rec.close()
conn = sqlite3.connect(db)
conn.execute("UPDATE runs SET host = ?, started_at = ? - 3600, finished_at = ? - 3500 "
             "WHERE id > ?", (host, last, last, top))
conn.execute("UPDATE tasks SET started_at = ? - 3590, finished_at = ? - 3580 WHERE run_id > ?",
             (last, last, top))
conn.commit()
conn.close()
print(json.dumps({}))
"""

ANALYTICS = ("success_rate", "duration_stats", "duration_trend", "flaky", "failures",
             "failure_groups", "regressions", "compare", "critical_path", "disk_usage")


_FIRST_COPY = """
import ottolytics.analyze.history
import ottolytics
t0 = time.perf_counter()
h = ottolytics.open(sys.argv[1])
n = len(h.runs())
print(json.dumps({"time": time.perf_counter() - t0, "rss": peak_mb(), "runs": n}))
"""


def work_dir(given=None):
    """Where the synthetic stores are kept: *given*, $OTTOLYTICS_BENCH_WORK, or
    the user's cache directory."""
    if given:
        return Path(given)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ottolytics" / "bench"


def cached_store(work, scale, log=print):
    """The synthetic store of *scale*, synthesized once into *work* and reused."""
    from ottolytics.tools.synth import synthesize
    runs = SCALES[scale]
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"synth-{runs}x{TASKS_PER_RUN}-{DAYS}d-seed{SEED}.db"
    if not path.exists():
        log(f"synthesizing {runs * TASKS_PER_RUN:,} tasks into {path} (once; reused after) ...")
        t0 = time.perf_counter()
        synthesize(path, runs=runs, tasks_per_run=TASKS_PER_RUN, seed=SEED, days=DAYS)
        log(f"  took {time.perf_counter() - t0:.0f} s")
    return path


def _child(code, *args, env=None):
    """The JSON line a fresh child process running *code* prints."""
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code, *map(str, args)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed: {proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_child(code, *args, n=3):
    """The child with the median time of *n* runs (``time`` or ``cold``)."""
    runs = [_child(code, *args) for _ in range(n)]
    key = "time" if "time" in runs[0] else "cold"
    return sorted(runs, key=lambda r: r[key])[n // 2]


def _runs_to_compare(store):
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        uids = [u for (u,) in conn.execute(
            "SELECT uid FROM runs ORDER BY started_at DESC LIMIT 2")]
        newest = conn.execute("SELECT max(started_at) FROM runs").fetchone()[0]
    finally:
        conn.close()
    return uids[1], uids[0], newest


def _wall(cmds, n):
    times = [[] for _ in cmds]
    for _ in range(n):
        for cmd, out in zip(cmds, times):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def bench_scale(scale, work, only=None, log=print):
    """The rows of ``bench --scale``; *only* names groups (rate, analytics, recording,
    tasks, commands, parquet)."""
    from ottolytics.tools.bench import Row, _ottolytics_cmd
    store = cached_store(work, scale, log)
    n = SCALES[scale] * TASKS_PER_RUN
    tmp = work / f"run-{scale}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    groups = only or ["rate", "analytics", "tasks", "commands", "parquet", "recording"]
    rows = []
    try:
        # The store's mirror (analyze/sources/mirror.py) is made once, before any
        # figure, as a user's first open() makes it; its cost is the mirror-first
        # row, measured on a fresh copy of the store.
        log("making the store's mirror (once; kept in the work directory) ...")
        _child(_FIRST_COPY, store)
        log("measuring the limits (DuckDB by hand) ...")
        one_file = tmp / "tasks.parquet"
        copy = _child(_ONE_FILE, store, one_file)
        hand_sqlite = _median_child(_HAND_RATE, store, "sqlite")
        hand_parquet = _median_child(_HAND_RATE, one_file, "parquet")
        hs, hp = hand_sqlite["time"], hand_parquet["time"]
        run_a, run_b, newest = _runs_to_compare(store)
        if "rate" in groups or "analytics" in groups:
            names = ANALYTICS if "analytics" in groups else ("success_rate",)
            for name in names:
                log(f"measuring {name} ...")
                # the median of three, or one run at 10M (each takes seconds there)
                got = _median_child(_ANALYTIC, store, name, run_a, run_b,
                                    n=1 if n >= 10_000_000 else 3)
                cold_ok = got["cold"] <= 1.0 and got["rss"] <= RSS_GOAL_MB
                rows.append(Row(f"{name}-cold", f"{name} from a fresh open(), {n:,} tasks",
                                got["cold"], "s", hs, "DuckDB by hand over the SQLite store "
                                "(weekly success rate per task)", "≤ 1 s, RSS ≤ 1 GB",
                                cold_ok, f"peak RSS {got['rss']:.0f} MiB"))
                rows.append(Row(f"{name}-warm", f"{name}, asked again of the same History "
                                "(its kept answer: no row changed)",
                                got["warm"], "s", hp, "the same by hand over one Parquet file "
                                "of the tasks", "≤ 0.3 s", got["warm"] <= 0.3))
                rows.append(Row(f"{name}-again", f"{name} computed again over the warm "
                                "History (keep_answers = False)", got["again"], "s", hp,
                                "the same by hand over one Parquet file of the tasks",
                                "≤ 0.3 s", got["again"] <= 0.3))
        if "tasks" in groups:
            log("measuring h.tasks() and pandas.read_sql ...")
            ours, base = _child(_TASKS, store), _child(_READ_SQL, store)
            rows.append(Row("tasks-frame", f"h.tasks(), {ours['rows']:,} rows, fresh process",
                            ours["time"], "s", base["time"], "pandas.read_sql of the same rows",
                            "≥ 7× faster", base["time"] >= 7 * ours["time"]))
            rows.append(Row("tasks-memory", "memory h.tasks() took (peak RSS less the "
                            "process's RSS before open())", ours["grew"], "MiB", ours["frame"],
                            "the frame's memory_usage(deep=True)", "≤ 1.5×",
                            ours["grew"] <= 1.5 * ours["frame"],
                            f"peak RSS {ours['rss']:.0f} MiB; read_sql took {base['grew']:.0f} "
                            f"MiB, peak {base['rss']:.0f} MiB"))
            # A filtered frame costs in proportion to the rows it returns: beside
            # it, a frame of no rows (what any frame costs) plus the whole frame's
            # time per row beyond that, times the rows it returned.
            empty = _median_child(_TASKS_FILTERED, store, "none", n=3)["time"]
            per_row = max(ours["time"] - empty, 0.0) / max(ours["rows"], 1)
            for kind, what in (("since", "the store's last 7 days"), ("project", "one project"),
                               ("task", "one task")):
                log(f"measuring h.tasks() filtered by {kind} ...")
                got = _median_child(_TASKS_FILTERED, store, kind, n=1 if n >= 10_000_000 else 3)
                rows.append(Row(f"tasks-{kind}", f"h.tasks() of {what} ({got['rows']:,} rows), "
                                "fresh process", got["time"], "s",
                                empty + per_row * got["rows"], "a frame of no rows, plus the "
                                "whole frame's time per row times the rows returned",
                                "≤ 1.5× (in proportion)",
                                got["time"] <= 1.5 * (empty + per_row * got["rows"]),
                                f"peak RSS {got['rss']:.0f} MiB"))
        if "commands" in groups:
            from datetime import datetime, timedelta, timezone
            week = (datetime.fromtimestamp(newest, timezone.utc) - timedelta(days=7)).isocalendar()
            cmd = _ottolytics_cmd() + ["--db", str(store)]
            hand = [sys.executable, "-c", _PRELUDE + _HAND_RATE, str(store), "sqlite"]
            for name, args in (("stats", ["stats"]),
                               ("report-weekly", ["report", "weekly", "--week",
                                                  f"{week[0]}-W{week[1]:02d}"]),
                               ("prometheus", ["export", "prometheus", str(tmp / "m.prom")])):
                log(f"measuring {name} ...")
                ours, base = _wall([cmd + args, hand], 1 if n >= 10_000_000 else 3)
                rows.append(Row(name, f"`ottolytics {' '.join(args[:2])}` over {n:,} tasks, "
                                "whole process", ours, "s", base, "a process running the "
                                "weekly success rate by hand in DuckDB over the store",
                                "≤ 0.5 s", ours <= 0.5))
        if "parquet" in groups:
            log("measuring export parquet ...")
            mine = tmp / "export.db"
            shutil.copyfile(store, mine)
            dataset = tmp / "dataset"
            # a cache of its own: the path is reused run after run, and a copy of
            # the store keeps its id, so the work cache may already hold its mirror
            fresh = dict(os.environ, OTTOLYTICS_CACHE=str(tmp / "first-copy-cache"))
            first = _child(_FIRST_COPY, mine, env=fresh)
            _child(_FIRST_COPY, mine)  # the mirror the export below reads
            rows.append(Row("mirror-first", f"the first open() of a store of {n:,} tasks "
                            "(its mirror made), fresh process", first["time"], "s", copy["time"],
                            "DuckDB COPY of the tasks table to one Parquet file",
                            "once per store; RSS ≤ 1 GB", first["rss"] <= RSS_GOAL_MB,
                            f"peak RSS {first['rss']:.0f} MiB"))
            full = _child(_EXPORT, mine, dataset)
            goal = 1.5 * max(n, 1_000_000) / 1_000_000
            rows.append(Row("parquet-full", f"export parquet of {n:,} tasks (4 tables), "
                            "fresh process", full["time"], "s", copy["time"],
                            "DuckDB COPY of the tasks table to one Parquet file",
                            f"1.5 s per 1M tasks (≤ {goal:.1f} s), RSS ≤ 1 GB",
                            full["time"] <= goal and full["rss"] <= RSS_GOAL_MB,
                            f"peak RSS {full['rss']:.0f} MiB (COPY's {copy['rss']:.0f} MiB); "
                            f"{len(list(dataset.glob('current/*/*/*/*.parquet')))} files"))
            _child(_ADD_RUNS, mine, NEW_RUNS)
            again = _child(_EXPORT, mine, dataset)
            rows.append(Row("parquet-incr", f"export after {NEW_RUNS:,} new runs "
                            f"({again['written']} chunk(s) written, {again['unchanged']} "
                            "kept as links)", again["time"], "s", full["time"],
                            "the full export", "≤ 1 s", again["time"] <= 1.0,
                            f"peak RSS {again['rss']:.0f} MiB"))
            read = _median_child(_DATASET_RATE, dataset)
            rows.append(Row("dataset-rate", "open(DATASET) + success_rate(by=('task',), "
                            "freq='W'), fresh process", read["time"], "s", hp,
                            "DuckDB by hand over one Parquet file of the tasks", "≤ 1.5×",
                            read["time"] <= 1.5 * hp, f"peak RSS {read['rss']:.0f} MiB"))
        if "recording" in groups:
            from ottolytics.tools.bench import timed_reads
            log("measuring reads in a recording process ...")
            mine = tmp / "recording.db"
            shutil.copyfile(store, mine)
            _child(_FIRST_COPY, mine)
            ro, rec, copies = timed_reads(mine, 3 if n >= 10_000_000 else 5)
            rows.append(Row("read-recording", "open() + success_rate(by='task', freq='W') in "
                            f"a process recording into the store, {n:,} tasks", rec, "s", ro,
                            "the same in a process that only reads",
                            "≤ 1.2×, no copy of the store", rec <= 1.2 * ro and copies == 0,
                            f"snapshots of the store taken: {copies}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(scale, only=None, out=None, work=None):
    """``ottolytics bench --scale``: measure, print the rows, write *out* (JSON)."""
    from ottolytics.tools.bench import _finish
    groups = ("rate", "analytics", "tasks", "commands", "parquet", "recording")
    unknown = [n for n in (only or []) if n not in groups]
    if scale not in SCALES or unknown:
        what = (f"row {unknown[0]!r}; with --scale choose from {', '.join(groups)}" if unknown
                else f"scale {scale!r}; choose from {', '.join(SCALES)}")
        print(f"ottolytics bench: unknown {what}", file=sys.stderr)
        return 2
    work = work_dir(work)
    # the stores' mirrors are kept with them, made once and reused
    os.environ.setdefault("OTTOLYTICS_CACHE", str(work / "cache"))
    rows = bench_scale(scale, work, only, log=lambda m: print(m, file=sys.stderr, flush=True))
    return _finish(rows, out, f"ottolytics bench --scale {scale}: {os.cpu_count()} cores, "
                              f"python {sys.version.split()[0]}, store in {work}")
