"""``ottolytics run start`` / ``run end``: a run that many processes add tasks to.

This is how make, just, CI steps and shell scripts are recorded: start a run,
export its id as ``OTTOLYTICS_RUN_ID`` so every ``ottolytics exec`` joins it,
then end it. A run started this way has no recording process of its own, so
recovery closes it only after the maximum run age.
"""

import os

from ottolytics.record.recorder import Recorder
from ottolytics.core.paths import dir_size, to_stored
from ottolytics.record.shim import store_waits, run_dir_for, store_home


def start_run(db=None, project=None, params=None):
    """Start a run and return its id (recorded, or spooled if the store is down).
    A locked store is waited for as exec waits before its command (shim.store_waits:
    0.25 s by default), then the start is spooled: a script is not held up."""
    rec = Recorder(db, wait=store_waits()[0])
    run = rec.run(project, params, args=None)
    home = store_home(db)  # the store's directory: where exec keeps the run's logs
    run.run_dir = to_stored(run_dir_for(run.uid, home), home)
    run.live = False
    run.start()
    rec.close()
    return run.uid


def end_run(uid, db=None, status=None):
    """End run *uid*, with *status* or one derived from its tasks.

    Returns the status recorded, or None when the store does not know the run.
    A locked store is waited for as exec waits after its command (up to 1 s),
    then the end is spooled.
    """
    rec = Recorder(db, wait=store_waits()[1])
    try:
        exists = rec.run_exists(uid)
        if exists is False:
            return None
        run = rec.attach(uid)
        run_dir = run_dir_for(uid, store_home(db))
        size = dir_size(run_dir) if os.path.exists(run_dir) else None
        run.finish(status, size_bytes=size)
        if exists is None:
            return status or "spooled"
        row = rec._store.conn.execute("SELECT status FROM runs WHERE uid = ?", (uid,)).fetchone()
        return row[0] if row else status
    finally:
        rec.close()
