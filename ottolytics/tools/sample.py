"""``ottolytics sample``: a realistic history with known stories in it, for the
README's main command, the notebooks and trying the tool.

It writes an OTTO_HOME: ``ottolytics.db`` holding three projects recorded through
the Recorder API as a CI would (``web``, ``api``, ``etl``), plus a fourth project,
``mobile``, run by otto and written in otto's own layout with its otto.db, then
imported with ``sync``. Over 91 days ending 2026-11-20 (UTC):

* each project's DAG: lint -> build -> test:<suite> (a ``foreach`` over suites)
  -> package -> deploy; a nightly run at 02:00 beside ad-hoc runs on weekdays;
* log-normal durations; CPU time and peak memory per task; growing artifacts;
* ``web``'s ``test:integration`` is flaky: random timeouts in 30% of runs, retried
  once, and the retry passes three times in four;
* ``api``'s build gets 60% slower from REGRESSION_DATE (a new code generator);
* ``etl`` bumps pandas on BUMP_DATE, and ``test:unit`` fails with one signature
  for three days until it is fixed;
* one ``api`` run is killed part-way (interrupted) on KILLED_DATE;
* up-to-date tasks are skipped; tasks after a failure are skipped;
* ``mobile``'s runs grow their logs; otto skips its up-to-date lint without a
  trace; and otto's auto-prune has deleted the otto.db rows of its runs older
  than 30 days while their directories stay (sync imports those from files);
* failures carry realistic stderr.

The same seed always gives the same history (tested): times come from the
scenario, never the clock, and ids from the seed.
"""

import math
import os
import random
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone

END = datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)
DAYS = 91
REGRESSION_DATE = datetime(2026, 10, 12, tzinfo=timezone.utc)
BUMP_DATE = datetime(2026, 11, 3, tzinfo=timezone.utc)
FIX_DATE = BUMP_DATE + timedelta(days=3)
KILLED_DATE = datetime(2026, 11, 14, tzinfo=timezone.utc)
DEFAULT_SEED = 2026
OTTO_HOST = "mac-mini-1"  # where mobile's otto runs

RECORDED = {
    # project: (suites, median seconds of build, hosts)
    "web": (("unit", "integration", "e2e"), 70.0, ("ci-runner-a", "ci-runner-b")),
    "api": (("unit", "contract"), 95.0, ("ci-runner-a", "build-1")),
    "etl": (("unit", "data"), 40.0, ("build-2",)),
}
USERS = ("alice", "bob", "carol")
MEDIAN_S = {"lint": 6.0, "test:unit": 35.0, "test:integration": 80.0, "test:e2e": 150.0,
            "test:contract": 45.0, "test:data": 60.0, "package": 15.0, "deploy": 25.0}

FLAKY = ("E   redis.exceptions.TimeoutError: Timeout connecting to redis:6379 after 5.0s\n"
         "FAILED tests/integration/test_sessions.py::test_session_expiry[{n}] - "
         "TimeoutError\n========= 1 failed, {p} passed in {s:.1f}s =========")
BUMP = ("  File \"/builds/etl/src/etl/transform.py\", line 41, in <module>\n"
        "    from pandas.core.arrays.base import ExtensionArray as _EA\n"
        "ImportError: cannot import name 'ExtensionArray' from 'pandas.core.arrays.base' "
        "(/builds/etl/.venv/lib/python3.12/site-packages/pandas/core/arrays/base.py)\n"
        "ERROR tests/test_transform.py - ImportError (pandas {v})")
OTHER_FAILURES = {
    "lint": "src/{m}/handlers.py:{n}:80: E501 line too long ({l} > 79 characters)\n"
            "Found 1 error.",
    "build": "error: could not compile `{m}` (lib) due to 1 previous error\n"
             "error[E0425]: cannot find value `cfg_{n}` in this scope",
    "test": "FAILED tests/test_{m}.py::test_case_{n} - AssertionError: assert {l} == {n}",
    "package": "OSError: [Errno 28] No space left on device: '/tmp/pkg-{h}/{m}.whl'",
    "deploy": "Error: UPGRADE FAILED: timed out waiting for the condition "
              "(deployment/{m} rollout, {n}s)",
}
WARNINGS = {
    "build": "warning: unused variable: `tmp_{n}`\n  --> src/{m}/lib.rs:{l}:9",
    "test": "DeprecationWarning: datetime.utcnow() is deprecated and scheduled for removal",
}


def _ts(d):
    return d.timestamp()


def _lognormal(rng, median, sigma=0.25):
    return median * math.exp(rng.gauss(0.0, sigma))


def _fill(template, rng, project):
    return template.format(n=rng.randint(2, 400), m=project, l=rng.randint(80, 120),
                           h=f"{rng.getrandbits(32):08x}", p=rng.randint(90, 240),
                           s=rng.uniform(40, 90), v="3.0.0")


def _schedule(rng, day):
    """(start datetime, trigger, user) of one project's runs on *day*."""
    runs = [(day + timedelta(hours=2, minutes=rng.randint(0, 9), seconds=rng.randint(0, 59)),
             "nightly", "ci")]
    adhoc = rng.choice((1, 2, 2, 3, 4)) if day.weekday() < 5 else rng.choice((0, 0, 1))
    for _ in range(adhoc):
        at = day + timedelta(hours=rng.randint(8, 18), minutes=rng.randint(0, 59),
                             seconds=rng.randint(0, 59))
        runs.append((at, "push", rng.choice(USERS)))
    return sorted(runs)


def _task_plan(project, trigger, rng, at):
    """The tasks of one run in order: (name, deps, fate) with fate one of
    ok, skip (up to date), fail:<text>, flaky:<text>, kill."""
    suites, _build, _hosts = RECORDED[project]
    tests = [f"test:{s}" for s in suites]
    plan = [("lint", [], "skip" if trigger == "push" and rng.random() < 0.2 else "ok"),
            ("build", ["lint"], "ok")]
    plan += [(t, ["build"], "ok") for t in tests]
    plan += [("package", tests, "ok")]
    if trigger == "nightly" or rng.random() < 0.3:
        plan.append(("deploy", ["package"], "ok"))
    out = []
    for name, deps, fate in plan:
        stage = name.split(":")[0]
        if fate == "ok":
            if project == "web" and name == "test:integration" and rng.random() < 0.3:
                fate = "flaky:" + _fill(FLAKY, rng, project)
            elif (project == "etl" and name == "test:unit"
                  and BUMP_DATE <= at < FIX_DATE):
                fate = "fail:" + _fill(BUMP, rng, project)
            elif rng.random() < {"lint": 0.02, "build": 0.025, "test": 0.02,
                                 "package": 0.008, "deploy": 0.03}[stage]:
                fate = "fail:" + _fill(OTHER_FAILURES[stage], rng, project)
        out.append((name, deps, fate))
    return out


def _record_projects(db, rng):
    """The CI-recorded projects, through the Recorder API in one batch per run."""
    from ottolytics.record.recorder import Recorder
    rec = Recorder(db)
    start_day = (END - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0)
    n = 0
    killed = False
    for offset in range(DAYS + 1):
        day = start_day + timedelta(days=offset)
        for project in RECORDED:
            for at, trigger, user in _schedule(rng, day):
                if at >= END:
                    continue
                n += 1
                kill = (project == "api" and not killed and at >= KILLED_DATE
                        and trigger == "push")
                killed = killed or kill
                _record_run(rec, rng, project, at, trigger, user, n, kill)
    rec.close()
    return n


def _record_run(rec, rng, project, at, trigger, user, n, kill):
    suites, build_median, hosts = RECORDED[project]
    weeks = (at - (END - timedelta(days=DAYS))).days / 7
    params = {"trigger": trigger, "branch": "main" if trigger == "nightly" or rng.random() < 0.5
              else rng.choice(("feature/login", "fix/timeouts", "chore/deps")),
              "python": "3.12"}
    if project == "etl":
        params["pandas"] = "3.0.0" if at >= BUMP_DATE else "2.2.3"
    run = rec.run(project=project, params=params, uid=f"{project}-{n:05d}",
                  args=["ci", trigger, project], host=rng.choice(hosts), user=
                  "ci" if trigger == "nightly" else user, cwd=f"/builds/{project}")
    run.live = False  # no recording process to check for liveness
    t = _ts(at)
    failed = set()
    killed_at = None
    with rec.batch():
        run.start(at=t)
        clock = {}
        plan = _task_plan(project, trigger, rng, at)
        if kill:
            plan = [(name, deps, "kill" if name.startswith("test:") else fate)
                    for name, deps, fate in plan]
        for name, deps, fate in plan:
            begin = max([clock.get(d, t) for d in deps] + [t]) + rng.uniform(0.2, 1.5)
            if killed_at is not None or any(d in failed for d in deps):
                run.skip_task(name, reason="a dependency failed" if killed_at is None
                              else "the run was killed", deps=deps, at=begin)
                if killed_at is None:
                    failed.add(name)
                continue
            if fate == "skip":
                task = run.task(name, deps=deps).start(at=begin)
                task.finish(status="skipped", reason="up to date", at=begin + 0.1)
                clock[name] = begin + 0.1
                continue
            median = build_median if name == "build" else MEDIAN_S.get(name, 20.0)
            if name == "build" and project == "api" and at >= REGRESSION_DATE:
                median *= 1.6
            # builds are steadier than tests: less noise around their median
            duration = _lognormal(rng, median, 0.1 if name == "build" else 0.25)
            end = begin + duration
            stage = name.split(":")[0]
            res = {"cpu_user_s": round(duration * rng.uniform(0.55, 0.95), 3),
                   "cpu_system_s": round(duration * rng.uniform(0.03, 0.1), 3),
                   "peak_rss_bytes": int(rng.uniform(0.2, 1.5) * (2 << 28))}
            task = run.task(name, deps=deps).start(at=begin)
            if fate == "kill":
                cut = begin + duration * rng.uniform(0.2, 0.6)
                task.finish(status="interrupted", signal=15, reason="killed by SIGTERM",
                            at=cut, stderr_tail="Terminated\n", **res)
                killed_at = cut
                continue
            if fate.startswith(("fail:", "flaky:")):
                text = fate.split(":", 1)[1]
                end = begin + duration * rng.uniform(0.3, 0.9)
                task.finish(1, at=end, stderr_tail=text + "\n", **res)
                if fate.startswith("flaky:"):  # retried once; usually passes
                    again = run.task(name, deps=deps).start(at=end + 1)
                    end2 = end + 1 + _lognormal(rng, median)
                    if rng.random() < 0.75:
                        again.finish(0, at=end2, **res)
                        clock[name] = end2
                        continue
                    again.finish(1, at=end2, stderr_tail=_fill(FLAKY, rng, project) + "\n",
                                 **res)
                failed.add(name)
                clock[name] = end
                continue
            tail = (_fill(WARNINGS[stage], rng, project) + "\n"
                    if stage in WARNINGS and rng.random() < 0.3 else None)
            task.finish(0, at=end, stderr_tail=tail, **res)
            clock[name] = end
        finish_at = max(list(clock.values()) + [killed_at or t]) + rng.uniform(0.5, 2.0)
        size = int((40 + 3 * weeks + rng.uniform(-4, 4)) * 1_000_000) if project != "etl" \
            else int((8 + weeks * 0.5) * 1_000_000)
        if killed_at is not None:
            run.finish("interrupted", reason="killed by SIGTERM", size_bytes=size,
                       at=killed_at + 0.5)
        else:
            run.finish(size_bytes=size, at=finish_at)


def _otto_project(home, rng):
    """``mobile``: otto runs every third day, written as otto writes them, with
    otto.db kept beside them (as ``OTTO_DB_PATH=$OTTO_HOME/otto.db`` does). Some
    runs find lint up to date, so otto skips it without a trace; some are run
    with ``otto --tui``; a failing unit test stops the run, cutting off the UI
    tests. After each run otto's auto-prune deletes the otto.db rows of runs
    older than 30 days (but the newest 10), and leaves their directories."""
    from ottolytics.tools.otto_layout import Task, make_run
    start = END - timedelta(days=DAYS)
    db_path = os.path.join(home, "otto.db")
    runs = []
    version = 0
    for offset in range(0, DAYS, 3):
        at = (start + timedelta(days=offset, hours=3, minutes=rng.randint(0, 30)))
        ts = int(at.timestamp())
        if offset % 12 == 0:
            version += 1   # the build script changes now and then: a new cache entry
        growth = 1 + offset // 9
        lines = "".join(f"[{i:03d}] compiling module_{i}.kt\n" for i in range(20 * growth))
        fail = rng.random() < 0.06
        lint_skipped = rng.random() < 0.3          # nothing changed since: up to date
        lint = int(_lognormal(rng, 8)) + 1
        build_at = 1 + (0 if lint_skipped else lint + 1)
        build = int(_lognormal(rng, 120)) + 1
        test_at = build_at + build + 1
        unit, ui = int(_lognormal(rng, 60)) + 1, int(_lognormal(rng, 200)) + 1
        tasks = [
            Task("lint", start=1, duration=lint, stdout="lint ok\n",
                 status="skipped" if lint_skipped else "success"),
            Task("build", start=build_at, duration=build, deps=["lint"],
                 stdout=lines, script=f"#!/bin/bash\n./gradlew assembleRelease  # v{version}\n",
                 output={"apk": f"app-release-v{version}.aab"}),
            Task("test:unit", start=test_at, duration=unit,
                 deps=["build"], status="failed" if fail else "success",
                 stderr=("com.example.LoginTest > testTokenRefresh FAILED\n"
                         "    java.lang.AssertionError at LoginTest.kt:88\n") if fail else "",
                 stdout="".join(f"test {i} PASSED\n" for i in range(30 + offset))),
            # otto stops at the first failure: the UI tests are cut off there
            Task("test:ui", start=test_at, duration=unit if fail else ui,
                 deps=["build"], stdout="ui tests: 48 passed\n",
                 status="running" if fail else "success"),
            Task("package", start=test_at + max(unit, ui) + 1,
                 duration=int(_lognormal(rng, 20)) + 1, deps=["test:unit", "test:ui"],
                 stdout="app-release.aab\n", status="unreached" if fail else "success"),
        ]
        runs.append(make_run(home, "/src/mobile", ts, tasks, user="ci", db_path=db_path,
                             tui=rng.random() < 0.2, clock_skew=int(rng.random() < 0.25)))
    conn = sqlite3.connect(db_path)  # one file for the sample: no -wal/-shm beside it
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return len(runs)


def generate(out, seed=DEFAULT_SEED, force=False):
    """Write the sample OTTO_HOME to *out* (a directory that must not exist unless
    *force*); returns a summary dict."""
    from ottolytics.store.connection import Store
    from ottolytics.sources.sync import sync
    out = os.path.abspath(str(out))
    if os.path.exists(out):
        if not force:
            raise FileExistsError(f"{out}: already exists; pass --force to overwrite it")
        shutil.rmtree(out)
    os.makedirs(out)
    rng = random.Random(seed)
    db = os.path.join(out, "ottolytics.db")
    recorded = _record_projects(db, rng)
    otto_runs = _otto_project(out, rng)
    # mobile's otto kept otto.db beside its runs: read that one, never ~/.otto's
    saved = os.environ.get("OTTO_DB_PATH")
    os.environ["OTTO_DB_PATH"] = os.path.join(out, "otto.db")
    try:
        report = sync(db, otto_home_dir=out, source="otto", progress=False)
    finally:
        if saved is None:
            del os.environ["OTTO_DB_PATH"]
        else:
            os.environ["OTTO_DB_PATH"] = saved
    with Store.open(db, create=False) as store:  # one file, no -wal/-shm beside it
        # otto.db's hostname is NULL, so sync took this host; the sample's mobile
        # runs were run (and synced) on its build machine, wherever it is generated.
        with store.conn:
            store.conn.execute("UPDATE runs SET host = ? WHERE source = 'otto'", (OTTO_HOST,))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.conn.execute("PRAGMA journal_mode = DELETE")
        store.conn.execute("VACUUM")
    return {"home": out, "store": db, "recorded_runs": recorded, "otto_runs": otto_runs,
            "synced": report.added.get("otto", 0)}
