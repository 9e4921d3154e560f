#!/usr/bin/env python3
"""Measure how recording holds up under faults; print what was tried, what
survived and what was lost.

    python scripts/reliability.py            # about five minutes on 2 shared cores
    python scripts/reliability.py --quick    # smaller, about two minutes

Not part of the test suite: it runs real processes, kills them with SIGKILL
at random moments, holds locks, fills a small tmpfs (needs root to mount;
skipped otherwise) and checks the store afterwards. Everything happens in a
temporary directory; nothing outside it is touched. The README's
"Reliability" section quotes its output.

Scenarios:
  writers   N processes record runs through the Python API; random ones are
            killed with SIGKILL and replaced. Every run a writer finished
            must be in the store, and no run may stay 'running'.
  shims     many concurrent `ottolytics exec`; each exit code must be kept
            and every task must reach the store (directly or by replay).
  locked    another process holds an EXCLUSIVE lock with an open write
            transaction: the command's output must appear at once, its
            exit code be kept, its recorded duration be its own, and the run
            reach the store after the lock is released.
  sigterm   SIGTERM while the command runs (forwarded, 143, interrupted) and
            while the shim waits for a locked store (command not started).
  fulldisk  a command writes more than a 64 KiB tmpfs holds: the terminal
            gets everything, the logs keep what fitted, and it is said.
  killed    sync, clean, export parquet, export prometheus and report weekly
            killed with SIGKILL at random moments: the store stays intact and
            outputs are complete or absent.
"""

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = []


def ottolytics(*args, env=None, **kw):
    return [PY, "-m", "ottolytics", *map(str, args)]


def environ(home, **more):
    env = dict(os.environ, OTTO_HOME=str(home), XDG_STATE_HOME=str(Path(home).parent / "state"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OTTOLYTICS_DB", "OTTOLYTICS_RUN_ID", "OTTOLYTICS_SPOOL_DIR",
                "OTTOLYTICS_BUSY_TIMEOUT", "OTTOLYTICS_EXEC_WAIT"):
        env.pop(var, None)
    env.update({k: str(v) for k, v in more.items()})
    return env


def run(args, env, timeout=120, **kw):
    return subprocess.run(args, env=env, capture_output=True, timeout=timeout, **kw)


def rows(db, sql, *params):
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def report(scenario, tried, survived, lost, note=""):
    RESULTS.append((scenario, tried, survived, lost, note))
    print(f"  {scenario:<22} tried {tried:<28} survived {survived:<30} lost {lost}"
          + (f"  ({note})" if note else ""), flush=True)


# -- writers with random kill -9 ---------------------------------------------

WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[3])
import ottolytics
db, done_path = sys.argv[1], sys.argv[2]
rec = ottolytics.Recorder(db)
with open(done_path, "a") as done:
    while True:
        with rec.run(project="w%d" % os.getpid()) as r:
            with r.task("build"):
                pass
            with r.task("test", deps=["build"]) as t:
                t.log("ok\n")
        done.write(r.uid + "\n")
        done.flush()
"""


def writers(work, seconds, count):
    home = work / "writers"
    home.mkdir()
    db = home / "ottolytics.db"
    env = environ(home)
    script = work / "writer.py"
    script.write_text(WRITER)
    done_dir = work / "done"
    done_dir.mkdir()
    procs, killed, started = [], 0, 0

    def spawn():
        nonlocal started
        started += 1
        return subprocess.Popen([PY, str(script), str(db), str(done_dir / f"{started}.txt"),
                                 str(ROOT)], env=env, stderr=subprocess.DEVNULL)

    procs = [spawn() for _ in range(count)]
    deadline = time.monotonic() + seconds
    rng = random.Random(13)
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        victim = rng.randrange(len(procs))
        procs[victim].kill()
        procs[victim].wait()
        killed += 1
        procs[victim] = spawn()
    for p in procs:  # the last ones die mid-run too
        p.kill()
        p.wait()
        killed += 1
    finished = set()
    for f in done_dir.iterdir():
        finished.update(line for line in f.read_text().splitlines() if len(line) == 16)
    doctor = run(ottolytics("--db", db, "doctor"), env)
    stored = dict(rows(db, "SELECT uid, status FROM runs"))
    lost = [u for u in finished if u not in stored]
    wrong = [u for u in finished if u in stored and stored[u] != "success"]
    running = sum(1 for s in stored.values() if s == "running")
    interrupted = sum(1 for s in stored.values() if s == "interrupted")
    integrity = rows(db, "PRAGMA integrity_check")[0][0]
    report("writers kill -9", f"{count} writers, {killed} kill -9",
           f"{len(finished) - len(lost)}/{len(finished)} finished runs",
           f"{len(lost)} runs" + (f", {len(wrong)} wrong status" if wrong else ""),
           f"{interrupted} runs cut by a kill marked interrupted, {running} left running, "
           f"integrity {integrity}, doctor exit {doctor.returncode}")


# -- concurrent shims ------------------------------------------------------------

def shims(work, count):
    home = work / "shims"
    home.mkdir()
    db = home / "ottolytics.db"
    env = environ(home)
    t0 = time.monotonic()
    procs = [subprocess.Popen(ottolytics("exec", "--task", f"job{i}", "--", "sh", "-c",
                                         f"exit {i % 4}"),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(count)]
    kept, spooled = 0, 0
    for i, p in enumerate(procs):
        _out, err = p.communicate(timeout=300)
        kept += p.returncode == i % 4
        spooled += b"spooled" in err
    wall = time.monotonic() - t0
    direct = len(rows(db, "SELECT id FROM tasks"))
    run(ottolytics("--db", db, "doctor"), env)
    stored = dict(rows(db, "SELECT name, exit_code FROM tasks"))
    right = sum(1 for i in range(count) if stored.get(f"job{i}") == i % 4)
    report("concurrent shims", f"{count} at once",
           f"{kept}/{count} exit codes, {right}/{count} tasks",
           f"{count - right} tasks",
           f"{direct} written directly, {spooled} shims spooled and were replayed; "
           f"{wall:.1f} s wall on this machine")


# -- locked store --------------------------------------------------------------

def hold_exclusive(db):
    sys.path.insert(0, str(ROOT))
    from ottolytics.store.connection import Store
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS held(x)")
    return holder


def locked(work, count):
    home = work / "locked"
    home.mkdir()
    db = home / "ottolytics.db"
    env = environ(home)
    holder = hold_exclusive(db)
    firsts, totals, codes = [], [], 0
    try:
        for i in range(count):
            t0 = time.monotonic()
            p = subprocess.Popen(ottolytics("exec", "--task", f"quick{i}", "--", "sh", "-c",
                                            "echo hello; exit 3"),
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = p.stdout.readline()
            firsts.append(time.monotonic() - t0)
            p.communicate(timeout=120)
            totals.append(time.monotonic() - t0)
            codes += p.returncode == 3 and line == b"hello\n"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    run(ottolytics("--db", db, "doctor"), env)
    got = rows(db, "SELECT exit_code, finished_at - started_at FROM tasks")
    durations = [d for _c, d in got]
    report("locked store (EXCLUSIVE)", f"{count} commands",
           f"{codes}/{count} outputs+exit codes, {len(got)}/{count} runs after release",
           f"{count - len(got)} runs",
           f"first output after {max(firsts):.2f} s at most, shim done after "
           f"{max(totals):.2f} s at most, recorded durations <= "
           f"{max(durations) if durations else float('nan'):.3f} s")


# -- SIGTERM ---------------------------------------------------------------------

def sigterm(work, count):
    home = work / "sigterm"
    home.mkdir()
    db = home / "ottolytics.db"
    env = environ(home)
    ok_running = 0
    for i in range(count):
        p = subprocess.Popen(ottolytics("exec", "--task", f"long{i}", "--", "sleep", "30"),
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
        ok_running += p.returncode == 143 and time.monotonic() - t0 < 2
    holder = hold_exclusive(db)
    ok_waiting, markers = 0, []
    try:
        for i in range(count):
            marker = work / f"started{i}"
            markers.append(marker)
            p = subprocess.Popen(ottolytics("exec", "--task", f"never{i}", "--", "touch", marker),
                                 env=dict(env, OTTOLYTICS_EXEC_WAIT="4"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1.5)
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)
            ok_waiting += p.returncode == 143 and not marker.exists()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    run(ottolytics("--db", db, "doctor"), env)
    statuses = [s for (s,) in rows(db, "SELECT status FROM tasks")]
    interrupted = statuses.count("interrupted")
    report("SIGTERM", f"{count} while running, {count} while waiting",
           f"{ok_running}+{ok_waiting} exited 143 as they should, "
           f"{interrupted}/{2 * count} recorded interrupted",
           f"{2 * count - len(statuses)} tasks",
           f"{sum(m.exists() for m in markers)} commands started after SIGTERM")


# -- full disk ---------------------------------------------------------------------

def fulldisk(work):
    mount = work / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        report("full disk", "skipped", "-", "-",
               "mounting a tmpfs is not permitted here: " + done.stderr.decode().strip())
        return
    try:
        db = work / "fulldisk.db"
        env = environ(mount)
        size = 200_000
        code = (f"import sys; sys.stdout.write('o' * {size}); sys.stdout.flush(); "
                f"sys.stderr.write('e' * {size})")
        p = run(ottolytics("--db", db, "exec", "--task", "big", "--", PY, "-c", code), env)
        said = [l for l in p.stderr.decode(errors="replace").splitlines()
                if "incomplete" in l]
        run_dir, out, err = rows(db, "SELECT r.run_dir, t.stdout_path, t.stderr_path FROM tasks t "
                                     "JOIN runs r ON r.id = t.run_id")[0]
        kept = [len((mount / run_dir / path).read_bytes()) for path in (out, err)]
        reason = rows(db, "SELECT reason FROM transitions WHERE task_id IS NOT NULL "
                          "AND reason IS NOT NULL")
        terminal = p.stdout == b"o" * size and p.stderr.startswith(b"e" * size)
        report("full disk (64 KiB)", f"2 x {size} bytes of output",
               f"terminal {'all' if terminal else 'NOT all'}, logs kept {kept[0]} + {kept[1]} "
               "bytes", f"{2 * size - sum(kept)} bytes of log",
               f"{len(said)} warning lines, reason recorded: {'yes' if reason else 'no'}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- killed sync, clean, exports ------------------------------------------------

def _fresh_home(work, name):
    home = work / name
    shutil.copytree(ROOT / "data" / "sample", home)
    return home


def _outputs_ok(kind, target, db, env):
    """None when what is on disk is complete or absent, else what is wrong."""
    if kind == "prometheus":
        if not target.exists():
            return None
        text = target.read_text()
        if not text.endswith("\n") or "# EOF" in text[:-6]:
            return "prometheus textfile is cut short"
        return None
    if kind == "weekly":
        if not target.exists():
            return None
        text = target.read_text()
        return None if text.endswith("\n") else "weekly CSV is cut short"
    if kind == "parquet":
        if not target.exists():
            return None
        probe = run([PY, "-c", "import sys, ottolytics; h = ottolytics.open(sys.argv[1]); "
                     "print(len(h.runs()), len(h.tasks()))", str(target)], env)
        if probe.returncode != 0:
            last = (probe.stderr.decode().strip().splitlines() or ["?"])[-1]
            return None if "Traceback" not in probe.stderr.decode() else f"open fails: {last}"
        runs_n, tasks_n = map(int, probe.stdout.split())
        want_runs, want_tasks = (rows(db, "SELECT count(*) FROM runs")[0][0],
                                 rows(db, "SELECT count(*) FROM tasks")[0][0])
        if (runs_n, tasks_n) not in ((want_runs, want_tasks), (0, 0)):
            return f"dataset reads {runs_n}/{want_runs} runs, {tasks_n}/{want_tasks} tasks"
        return None
    return None


def killed(work, kills):
    rng = random.Random(7)
    ops = {
        "sync": lambda home, t: ["sync"],
        "clean": lambda home, t: ["clean", "--yes", "--keep", "1", "--keep-last", "1",
                                  "--keep-failed", "1"],
        "parquet": lambda home, t: ["export", "parquet", t],
        "prometheus": lambda home, t: ["export", "prometheus", t],
        "weekly": lambda home, t: ["report", "weekly", "--out", t],
    }
    targets = {"parquet": "dataset", "prometheus": "ottolytics.prom", "weekly": "weekly.csv"}
    for kind, argv in ops.items():
        # How long the operation takes whole, to kill it somewhere inside.
        home = _fresh_home(work, f"{kind}-whole")
        if kind == "sync":
            (home / "ottolytics.db").unlink()
        env = environ(home)
        target = work / f"{kind}-whole-{targets.get(kind, 'x')}"
        t0 = time.monotonic()
        whole = run(ottolytics(*argv(home, target)), env, timeout=600)
        span = time.monotonic() - t0
        expected = rows(home / "ottolytics.db", "SELECT count(*) FROM runs")[0][0]
        problems, bad_store, tmp_left, landed = [], 0, 0, 0
        for k in range(kills):
            home = _fresh_home(work, f"{kind}-{k}")
            if kind == "sync":
                (home / "ottolytics.db").unlink()
            env = environ(home)
            target = work / f"{kind}-{k}-{targets.get(kind, 'x')}"
            if kind in ("parquet", "prometheus", "weekly") and k % 2:
                run(ottolytics(*argv(home, target)), env, timeout=600)  # a previous output
            p = subprocess.Popen(ottolytics(*argv(home, target)), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, max(0.1, span)))
            p.kill()
            p.wait()
            landed += p.returncode == -signal.SIGKILL
            db = home / "ottolytics.db"
            if db.exists() and rows(db, "PRAGMA integrity_check")[0][0] != "ok":
                bad_store += 1
            wrong = _outputs_ok(kind, target, db, env) if db.exists() else None
            if wrong:
                problems.append(wrong)
            if target.exists() and target.is_dir():
                tmp_left += sum(1 for f in target.rglob("*") if ".tmp" in f.name)
            elif target.parent.exists():
                tmp_left += sum(1 for f in target.parent.glob(target.name + "*tmp*"))
            # Run it again: it must complete and converge.
            again = run(ottolytics(*argv(home, target)), env, timeout=600)
            if again.returncode != whole.returncode:
                problems.append(f"rerun exit {again.returncode}, whole run {whole.returncode}")
            if kind in ("sync", "clean"):
                count = rows(db, "SELECT count(*) FROM runs")[0][0]
                if count != expected:
                    problems.append(f"{count} runs after the rerun, {expected} expected")
        report(f"kill -9 {kind}", f"{kills} kills ({landed} mid-run, op takes {span:.1f} s)",
               f"store intact {kills - bad_store}/{kills}",
               f"{len(problems)} partial/inconsistent",
               "; ".join(sorted(set(problems))[:3]
                         + ([f"{tmp_left} temp files left"] if tmp_left else [])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about two minutes")
    parser.add_argument("--only", help="comma-separated scenarios: writers,shims,locked,"
                                       "sigterm,fulldisk,killed")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    sizes = dict(seconds=6, writers=4, shims=32, locked=3, sigterm=1, kills=2) if args.quick \
        else dict(seconds=20, writers=8, shims=120, locked=5, sigterm=3, kills=4)
    started = time.monotonic()
    print(f"ottolytics reliability, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ottolytics-reliability-") as tmp:
        work = Path(tmp)
        steps = [("writers", lambda: writers(work, sizes["seconds"], sizes["writers"])),
                 ("shims", lambda: shims(work, sizes["shims"])),
                 ("locked", lambda: locked(work, sizes["locked"])),
                 ("sigterm", lambda: sigterm(work, sizes["sigterm"])),
                 ("fulldisk", lambda: fulldisk(work)),
                 ("killed", lambda: killed(work, sizes["kills"]))]
        for name, step in steps:
            if only and name not in only:
                continue
            try:
                step()
            except Exception as exc:  # report and go on: one broken scenario is a finding
                report(name, "?", "?", "?", f"the scenario itself failed: {exc!r}")
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
