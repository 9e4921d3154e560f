"""``ottolytics demo``: record a small run through the shim and show its history.

It uses the same entry points a user would (``run start``, ``exec`` for each
task, ``run end``), in a store of its own so it never touches ``~/.otto``.
"""

import os
import sys
from pathlib import Path

from .cli import main as cli_main


def run_demo(home=None):
    home = Path(home or "demo-home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["OTTO_HOME"] = str(home)
    os.environ.pop("OTTOLYTICS_DB", None)
    os.environ.pop("OTTOLYTICS_RUN_ID", None)
    db = str(home / "ottolytics.db")
    py = sys.executable
    print(f"Recording a demo run into {db}\n")
    from .runs import end_run, start_run
    from .shim import exec_command
    run = start_run(db=db, project="demo", params={"branch": "main"})
    steps = [
        ("lint", [py, "-c", "print('lint: 12 files clean')"]),
        ("build", [py, "-c", "import time; time.sleep(0.3); print('build: ok')"]),
        ("test", [py, "-c", "import sys; print('test: 41 passed'); "
                  "print('test_cache.py::test_expiry FAILED: timeout after 2.0s', file=sys.stderr); "
                  "sys.exit(1)"]),
    ]
    for task, argv in steps:
        code = exec_command(argv, db=db, task=task, run=run)
        print(f"  [{task} exited {code}]")
    status = end_run(run, db=db)
    logs = home / "ottolytics" / "runs" / run
    print(f"\nRun {run} ended: {status}. Its logs are under {logs}\n")
    code = cli_main(["--db", db, "history", "-n", "5"])
    from .history import open as open_history
    h = open_history(db)
    rates = h.success_rate(by="task", freq=None)[["task", "total", "successes", "failures",
                                                  "rate"]]
    print("\nIn Python: h = ottolytics.open(db); h.success_rate(by='task', freq=None)")
    print(rates.to_string(index=False))
    top = h.failure_groups()
    if not top.empty:
        print(f"\nh.failure_groups(): {top['count'][0]}x {top['message'][0]!r} in {top['tasks'][0]}")
    h.close()
    print(f"\nNext: ottolytics --db {db} history --json"
          f"\n      cat {logs / 'tasks' / 'test' / 'stderr.log'}"
          f"\n      ottolytics --db {db} doctor")
    return code
