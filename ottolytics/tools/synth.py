"""``ottolytics synth``: a synthetic history written straight into a new store.

For tests, benchmarks, and trying the tool at scale. The same seed (and end
time) always gives the same store. What it contains:

* several projects and hosts; runs spread over ``days`` days ending at ``end``;
* per project a dependency chain lint -> build -> test -> package -> deploy,
  with extra ``check:N`` tasks fanning out from build when a run has more
  than five tasks;
* log-normal durations per task, failures with exit codes, stderr tails and
  the odd kill by signal, downstream tasks skipped after a failure,
  up-to-date skips, retries (a second attempt), and interrupted runs;
* status changes stored as the recorder stores them: implied by the task row
  on the plain path, logged in ``status_log`` otherwise (skips, interruptions,
  every run change).

The store is loaded in a temporary file with its indexes dropped and
rebuilt, then switched to WAL and renamed into place, so a crash never leaves
a half-written store at the target path.
"""

import hashlib
import os
import random
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from ottolytics.store import migrations
from ottolytics.store.statuses import OUTCOMES

# A fixed default end keeps the output identical for a seed on any day.
DEFAULT_END = datetime(2026, 11, 21, tzinfo=timezone.utc).timestamp()

PROJECTS = ("web", "api", "etl", "docs", "infra")
HOSTS = ("build-1", "build-2", "build-3", "ci-runner-a", "ci-runner-b")
USERS = ("alice", "bob", "ci")
STAGES = ("lint", "build", "test", "package", "deploy")
# Median seconds per stage; check:N tasks use 8 s.
MEDIAN_S = {"lint": 4.0, "build": 45.0, "test": 90.0, "package": 12.0, "deploy": 20.0}
FAILURE_RATE = {"lint": 0.02, "build": 0.03, "test": 0.08, "package": 0.01, "deploy": 0.02}
FAILURES = (
    "error[E0308]: mismatched types at src/lib.rs:{n}:{m}",
    "FAILED tests/test_api.py::test_retry_{n} - AssertionError: expected 200, got 503",
    "npm ERR! code ELIFECYCLE\nnpm ERR! errno {n}",
    "fatal: unable to access 'https://git.example.com/repo-{n}.git/': Could not resolve host",
    "OSError: [Errno 28] No space left on device: '/tmp/build-{hex}/out.o'",
    "Traceback (most recent call last):\n  File \"deploy.py\", line {n}\nTimeoutError: "
    "deploy to cluster-{m} timed out after {n}s",
)


def _task_names(m):
    names = list(STAGES[:m])
    names += [f"check:{i}" for i in range(1, m - len(names) + 1)]
    return names


def _deps(name, names):
    if name.startswith("check:"):
        return ["build"] if "build" in names else []
    i = STAGES.index(name)
    dep = STAGES[i - 1] if i > 0 else None
    if name == "package":
        return [n for n in names if n.startswith("check:")] + ["test"] if "test" in names else []
    return [dep] if dep in names else []


def _hash8(*parts):
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8]


MAX_TASKS = 100_000_000  # ten times the benchmark's biggest store (17 GB of SQLite)


def synthesize(out, runs, tasks_per_run, seed=0, days=90.0, end=None, force=False):
    """Write a synthetic store to *out*; returns a summary dict (runs, tasks, seconds).
    At most MAX_TASKS tasks (runs * tasks_per_run), else ValueError."""
    t0 = time.perf_counter()
    if runs * tasks_per_run > MAX_TASKS:
        raise ValueError(f"{runs:,} runs of {tasks_per_run:,} tasks: at most {MAX_TASKS:,} "
                         f"tasks are synthesized; give fewer --runs or --tasks-per-run")
    out = Path(out)
    if out.is_dir():
        raise FileExistsError(f"{out}: is a directory; name the store file to write, "
                              f"e.g. {out / 'synth.db'}")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists; pass --force to overwrite it")
    end = DEFAULT_END if end is None else end
    tmp = out.with_name(out.name + f".synth-{os.getpid()}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        tmp.unlink()
    counts = {}
    try:
        _build(tmp, runs, tasks_per_run, seed, days, end, counts)
        os.replace(tmp, out)
    except BaseException:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
        raise
    counts["seconds"] = time.perf_counter() - t0
    return counts


def _build(tmp, runs, tasks_per_run, seed, days, end, counts):
    """Write the whole store into *tmp*; fills *counts*."""
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        migrations.migrate(conn, tmp)
        # Indexes and the change log's triggers are made again after the bulk
        # insert: a new store has no columnar copy for the log to keep up to date.
        indexes = conn.execute(
            "SELECT name, sql, type FROM sqlite_master WHERE type IN ('index', 'trigger') "
            "AND sql IS NOT NULL").fetchall()
        conn.execute("BEGIN")
        for name, _sql, kind in indexes:
            conn.execute(f"DROP {kind.upper()} {name}")
        counts.update(_generate(conn, random.Random(seed), runs, tasks_per_run, days, end))
        for _name, sql, _kind in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def _generate(conn, rng, n_runs, m, days, end):
    names = _task_names(m)
    deps = {name: _deps(name, names) for name in names}
    span = days * 86400.0
    start = end - span
    conn.executemany("INSERT INTO projects(id, name, created_at) VALUES (?, ?, ?)",
                     [(i + 1, p, start) for i, p in enumerate(PROJECTS)])
    starts = sorted(start + rng.random() * span for _ in range(n_runs))
    lognorm = rng.lognormvariate
    rnd = rng.random
    run_rows, task_rows, trans, dep_rows, tails, params = [], [], [], [], [], []
    task_id = 0
    trans_id = 0
    total_tasks = 0
    for run_id, run_start in enumerate(starts, 1):
        project_id = rng.randrange(len(PROJECTS)) + 1
        project = PROJECTS[project_id - 1]
        host = HOSTS[rng.randrange(len(HOSTS))]
        # Scripts change now and then: a new hash every ~20 days per project.
        epoch = int((run_start - start) // (20 * 86400))
        interrupted_at = rng.randrange(len(names)) if rnd() < 0.003 else None
        clock = run_start
        failed = False
        run_status = "success"
        for index, name in enumerate(names):
            attempts = 1
            if failed:
                status, duration = "skipped", 0.0
            elif interrupted_at == index:
                status, duration = "interrupted", lognorm(0, 0.5) * MEDIAN_S.get(name, 8.0) * 0.5
            elif name in ("lint", "package") and rnd() < 0.1:
                status, duration = "skipped", 0.0
            else:
                rate = FAILURE_RATE.get(name, 0.02)
                status = "failed" if rnd() < rate else "success"
                duration = lognorm(0, 0.35) * MEDIAN_S.get(name, 8.0)
                if status == "failed" and name == "test" and rnd() < 0.5:
                    attempts = 2  # a retry; the second attempt decides
            for attempt in range(1, attempts + 1):
                if attempt == 2:
                    status = "success" if rnd() < 0.7 else "failed"
                    duration = lognorm(0, 0.35) * MEDIAN_S.get(name, 8.0)
                task_id += 1
                t_start = clock
                t_end = clock + duration
                clock = t_end + rnd() * 0.5
                exit_code = sig = None
                if status == "success":
                    exit_code = 0
                elif status == "failed":
                    if rnd() < 0.05:
                        sig = 9
                    else:
                        exit_code = (1, 1, 1, 2, 101)[rng.randrange(5)]
                    tmpl = FAILURES[rng.randrange(len(FAILURES))]
                    tails.append((task_id, tmpl.format(n=rng.randrange(1, 999),
                                                       m=rng.randrange(1, 99),
                                                       hex=f"{rng.getrandbits(32):08x}")))
                ran = status not in ("skipped",)
                plain = status in OUTCOMES
                cpu = duration * (0.6 + rnd() * 0.5) if ran else None
                task_rows.append((
                    task_id, run_id, name, attempt, status, t_start,
                    None if status == "running" else t_end, exit_code, sig,
                    cpu, cpu * 0.15 if cpu is not None else None,
                    int((50 + rnd() * 900) * 2 ** 20) if ran else None,
                    _script_hash(project, name, epoch), 0 if plain else 1))
                if status == "skipped":
                    trans_id += 1
                    trans.append((trans_id, run_id, task_id, None, "skipped", t_start,
                                  "dependency failed" if failed else "up to date"))
                elif status == "interrupted":
                    trans_id += 1
                    trans.append((trans_id, run_id, task_id, None, "running", t_start, None))
                    trans_id += 1
                    trans.append((trans_id, run_id, task_id, "running", "interrupted", t_end,
                                  "recording process is gone"))
                for dep in deps[name]:
                    dep_rows.append((task_id, dep))
                total_tasks += 1
            if status == "failed":
                failed = True
                run_status = "failed"
            if status == "interrupted":
                run_status = "interrupted"
                break
        run_end = clock
        run_rows.append((run_id, f"synth{run_id:011d}", project_id, run_status, run_start,
                         run_end, '["otto", "ci"]', "otto.yml", USERS[rng.randrange(3)], host,
                         f"/src/{project}", None, int(rnd() * 5e7), "synth"))
        trans_id += 1
        trans.append((trans_id, run_id, None, None, "running", run_start, None))
        trans_id += 1
        trans.append((trans_id, run_id, None, "running", run_status, run_end, None))
        params.append((run_id, "branch", "main" if rnd() < 0.8 else f"feature-{rng.randrange(40)}"))
        params.append((run_id, "env", ("dev", "staging", "prod")[rng.randrange(3)]))
        if len(task_rows) >= 50000:
            _flush(conn, run_rows, task_rows, trans, dep_rows, tails, params)
    _flush(conn, run_rows, task_rows, trans, dep_rows, tails, params)
    return {"runs": n_runs, "tasks": total_tasks}


_SCRIPT_HASHES = {}


def _script_hash(project, name, epoch):
    key = (project, name, epoch)
    value = _SCRIPT_HASHES.get(key)
    if value is None:
        value = _SCRIPT_HASHES[key] = _hash8(*key)
    return value


def _flush(conn, run_rows, task_rows, trans, dep_rows, tails, params):
    conn.executemany(
        "INSERT INTO runs(id, uid, project_id, status, started_at, finished_at, args, ottofile, "
        "user, host, cwd, run_dir, size_bytes, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        run_rows)
    conn.executemany(
        "INSERT INTO tasks(id, run_id, name, attempt, status, started_at, finished_at, "
        "exit_code, signal, cpu_user_s, cpu_system_s, peak_rss_bytes, script_hash, "
        "status_logged) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", task_rows)
    conn.executemany(
        "INSERT INTO status_log(id, run_id, task_id, from_status, to_status, at, reason) "
        "VALUES (?,?,?,?,?,?,?)", trans)
    conn.executemany("INSERT INTO task_deps(task_id, depends_on) VALUES (?, ?)", dep_rows)
    conn.executemany("INSERT INTO task_stderr(task_id, tail) VALUES (?, ?)", tails)
    conn.executemany("INSERT INTO run_params(run_id, key, value) VALUES (?, ?, ?)", params)
    for rows in (run_rows, task_rows, trans, dep_rows, tails, params):
        rows.clear()
