"""The spool: where recording events go while the store cannot take them.

Each recording process appends JSON lines to a file of its own, beside the
store when that directory is writable, else in a per-user fallback directory
(see ``paths.spool_dirs``). At the next successful open the files of processes
that have ended are replayed through the same code as live events, in one
transaction per file, and the file's name is written to ``spool_replays`` in
that transaction: a file is applied exactly once even if the replaying
process dies before deleting it.
"""

import os
import sys
import time
from os.path import basename, dirname, join

from ottolytics.store import events
from ottolytics.store.liveness import pid_alive, process_start_time
from ottolytics.core.paths import spool_dirs

SPOOL_FORMAT = 1
SUFFIX = ".jsonl"
CLAIM = ".replaying-"

# Spool files this process is still appending to (several recorders may share a pid).
_LIVE = set()


def _owner_name():
    """``pid-start-time-random``: a process's files sort in the order it wrote them,
    which replay keeps for events with the same time."""
    start = process_start_time(os.getpid())
    return f"{os.getpid()}-{int(start or 0)}-{time.time_ns():016x}-{os.urandom(3).hex()}"


class SpoolWriter:
    """Append-only event file for one recorder; opened lazily on first event."""

    def __init__(self, db):
        self.db = str(db)
        self.path = None
        self._file = None

    def _open(self):
        import json
        errors = []
        for directory in spool_dirs(self.db):
            path = f = None
            try:
                os.makedirs(directory, exist_ok=True)
                path = join(directory, _owner_name() + SUFFIX)
                f = open(path, "a", encoding="utf-8")
                header = {"spool": SPOOL_FORMAT, "db": str(os.path.abspath(self.db)),
                          "pid": os.getpid(), "created": time.time()}
                f.write(json.dumps(header) + "\n")
                f.flush()
                self.path, self._file = path, f
                _LIVE.add(basename(path))
                return
            except OSError as exc:
                errors.append(f"{directory}: {exc.strerror or exc}")
                _discard(f, path)  # e.g. a full disk: try the next directory
        raise OSError("no writable spool directory (" + "; ".join(errors) + ")")

    def append(self, event):
        import json
        if self._file is None:
            self._open()
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None:
            try:
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
            self._file = None
            _LIVE.discard(basename(self.path))


def _discard(f, path):
    if f is not None:
        try:
            f.close()
        except OSError:
            pass
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def _owner_alive(name):
    """Is the process that wrote spool file *name* still running?"""
    parts = name.split("-")
    try:
        pid, start = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return name + SUFFIX in _LIVE  # ours: replayable once its writer is closed
    return pid_alive(pid, start or None)


def _claimed_by_live(path):
    pid = basename(path).rsplit(CLAIM, 1)[1]
    return pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))


def pending_files(db):
    """Spool files for *db* waiting to be replayed (including stuck claims)."""
    found = []
    for directory in spool_dirs(db):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in sorted(names):
            if name.endswith(SUFFIX) or CLAIM in name:
                found.append(join(directory, name))
    return found


def read_events(path, bad_lines=None):
    """Parse a spool file; returns (events, bad_line_count).

    Lines that cannot be parsed are appended (as bytes) to *bad_lines* if given.
    """
    import json
    good, bad = [], 0
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            bad += 1  # typically the last line of a process killed mid-write
            if bad_lines is not None:
                bad_lines.append(raw)
            continue
        if number == 0 and "spool" in record:
            if record["spool"] > SPOOL_FORMAT:
                raise ValueError(f"{path}: spool format {record['spool']} is newer than "
                                 "this ottolytics; upgrade to replay it")
            continue
        if isinstance(record, dict) and record.get("e") in events.APPLY:
            good.append(record)
        else:
            bad += 1
            if bad_lines is not None:
                bad_lines.append(raw)
    return good, bad


def _claim_all(db, warn):
    """Claim every replayable spool file by renaming it; return [(original, path)]."""
    claimed = []
    for path in pending_files(db):
        name = basename(path)
        if name.endswith(SUFFIX):
            original = name
            if _owner_alive(name[: -len(SUFFIX)]):
                continue
        else:
            original = name.split(CLAIM, 1)[0]
            if _claimed_by_live(path):
                continue
        target = join(dirname(path), f"{original}{CLAIM}{os.getpid()}")
        try:
            os.rename(path, target)
        except OSError:
            continue  # another process claimed it first
        claimed.append((original, target))
    return claimed


def _merged_events(claimed, warn, bad_lines):
    """Events of all *claimed* files in time order, each tagged with its file.

    Files from different processes interleave (``run start`` in one, ``exec``
    tasks in others), so replaying file by file could end a run before its
    tasks arrive. A stable sort on the event time keeps each file's order.
    """
    merged, bad_counts, unreadable = [], {}, set()
    for index, (original, path) in enumerate(claimed):
        try:
            evs, bad = read_events(path, bad_lines.setdefault(original, []))
        except (OSError, ValueError) as exc:
            warn(f"cannot replay spool file {path}: {exc}")
            unreadable.add(original)
            continue
        bad_counts[original] = bad
        last_at = 0.0
        for seq, ev in enumerate(evs):
            last_at = ev.get("at", last_at)
            merged.append((last_at, index, seq, original, ev))
    merged.sort(key=lambda item: item[:3])
    return merged, bad_counts, unreadable


QUARANTINE = "quarantine"
SEEN = ".seen"


def quarantine_dir(spool_file):
    return join(dirname(spool_file), QUARANTINE)


def _quarantine(path, original, lines, failures):
    """Keep what could not be applied in ``quarantine/<original>``, one JSON line each;
    returns where. The rest of the file was applied, so it is not kept."""
    import json
    directory = quarantine_dir(path)
    os.makedirs(directory, exist_ok=True)
    kept = join(directory, original)
    with open(kept, "a", encoding="utf-8") as f:
        for raw in lines:
            f.write(json.dumps({"error": "unreadable line",
                                "line": raw.decode("utf-8", "backslashreplace")}) + "\n")
        for ev, error in failures:
            f.write(json.dumps({"error": error, "event": ev}) + "\n")
    return kept


def quarantined(db):
    """(not yet reported, reported before) quarantined spool files for *db*.

    ``*.failed`` files beside the spool (kept whole by earlier versions) count
    as not yet reported.
    """
    fresh, seen = [], []
    for directory in spool_dirs(db):
        for folder in (directory, join(directory, QUARANTINE)):
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            for name in names:
                full = join(folder, name)
                if folder == directory:
                    if name.endswith(".failed"):
                        fresh.append(full)
                elif name.endswith(SEEN):
                    seen.append(full)
                else:
                    fresh.append(full)
    return fresh, seen


def mark_reported(paths):
    """Move reported quarantine files aside so they are reported once, not forever."""
    moved = []
    for path in paths:
        directory = dirname(path)
        if basename(directory) != QUARANTINE:
            directory = join(directory, QUARANTINE)
        target = join(directory, basename(path) + SEEN)
        try:
            os.makedirs(directory, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
        except OSError:
            pass
    return moved


def replay(store, tokens_out=None, warn=None):
    """Replay every finished spool file for *store*; return (files, events, skipped).

    Events that cannot be applied (say, a finish whose start was lost) never
    block the others: they are skipped, counted, written with the reason to
    ``quarantine/<file>`` beside the spool (reported once by ``doctor``) and
    named in one warning line, so nothing is thrown away.
    """
    warn = warn or (lambda msg: print(f"ottolytics: warning: {msg}", file=sys.stderr))
    claimed = _claim_all(store.path, warn)
    if not claimed:
        return 0, 0, 0
    bad_lines = {}
    merged, bad_counts, unreadable = _merged_events(claimed, warn, bad_lines)
    failures = {}

    def apply_all(conn):
        failures.clear()
        done = {name for (name,) in conn.execute("SELECT name FROM spool_replays")
                if name in bad_counts}
        tokens, count = {}, 0
        for _at, _index, _seq, original, ev in merged:
            if original in done:
                continue
            conn.execute("SAVEPOINT ev")
            try:
                events.apply(store, conn, ev, tokens)
                conn.execute("RELEASE ev")
                count += 1
            except Exception as exc:  # a bad event must not sink the others
                conn.execute("ROLLBACK TO ev")
                conn.execute("RELEASE ev")
                failures.setdefault(original, []).append((ev, f"{ev.get('e')}: {exc}"))
        conn.executemany(
            "INSERT OR IGNORE INTO spool_replays(name, events, replayed_at) VALUES (?, ?, ?)",
            [(name, 0, time.time()) for name in bad_counts if name not in done])
        if tokens_out is not None:
            tokens_out.update(tokens)
        return count

    applied = store.write(apply_all)
    skipped = 0
    for original, path in claimed:
        if original in unreadable:
            continue
        failed = failures.get(original, [])
        problems = bad_counts.get(original, 0) + len(failed)
        skipped += problems
        if problems:
            try:
                kept = _quarantine(path, original, bad_lines.get(original, []), failed)
            except OSError as exc:  # cannot write the quarantine: keep the whole file
                kept = join(dirname(path), original + ".failed")
                os.replace(path, kept)
                warn(f"cannot quarantine spool file {original} ({exc.strerror or exc}); "
                     f"kept it as {kept}")
            else:
                os.unlink(path)
            detail = "; ".join(error for _ev, error in failed[:2]) or "unreadable lines"
            warn(f"spool file {original}: {problems} events could not be applied and were "
                 f"quarantined in {kept} ({detail}); the others were recorded")
        else:
            os.unlink(path)
    return len(claimed) - len(unreadable), applied, skipped
