"""core.files.atomic_write, the one way an output file is written: a temporary
file in the same directory, fsync, rename, fsync the directory. The weekly
report, the Prometheus textfile and clean's journal all use it."""

import os

import pytest

from ottolytics.core import files
from ottolytics.core.files import atomic_write


@pytest.fixture
def synced(monkeypatch):
    """The paths os.fsync was called on, file or directory, in order."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "f").mkdir()
    return tmp_path / "f"


def test_writes_whole_then_syncs_the_file_and_its_directory(folder, synced):
    path = folder / "out.txt"
    path.write_text("old")
    assert atomic_write(path, "new text\n") == str(path)
    assert path.read_text() == "new text\n"
    assert os.listdir(folder) == ["out.txt"]
    assert synced[-1] == str(folder) and synced[0].startswith(str(folder / ".out.txt."))
    atomic_write(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(folder, monkeypatch):
    path = folder / "out.txt"
    path.write_text("old")

    def broken(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old" and os.listdir(folder) == ["out.txt"]


def test_the_file_takes_the_umask_like_any_new_file(folder):
    old = os.umask(0o022)
    try:
        atomic_write(folder / "m.prom", "x")
    finally:
        os.umask(old)
    assert (folder / "m.prom").stat().st_mode & 0o777 == 0o644


def test_report_csv_prometheus_textfile_and_clean_journal_sync_file_and_directory(
        tmp_path, synced, db):
    import pandas as pd
    from known_history import record
    from ottolytics import open as open_history
    from ottolytics.export.prometheus import write_metrics
    from ottolytics.export.report import write_csv
    from ottolytics.manage.clean import _write_journal
    record(db)
    out = tmp_path / "out"
    out.mkdir()
    for write, name in ((lambda p: write_csv(pd.DataFrame({"a": [1]}), p), "r.csv"),
                        (lambda p: write_metrics(open_history(db), p), "m.prom"),
                        (lambda p: _write_journal(str(p), str(tmp_path), [], False), "j")):
        del synced[:]
        write(out / name)
        assert any(s.startswith(str(out / f".{name}.")) for s in synced), (name, synced)
        assert synced[-1] == str(out), (name, synced)
    assert sorted(os.listdir(out)) == ["j", "m.prom", "r.csv"]


def test_atomic_write_does_not_replace_a_link_or_a_fifo(tmp_path):
    """A review's finding: the export's check of its target ran before its query,
    so a link made meanwhile was replaced by a regular file. atomic_write itself
    refuses, just before its rename, to replace anything but a regular file."""
    import pytest
    from ottolytics.core.files import atomic_write
    tmp_path = tmp_path / "here"
    tmp_path.mkdir()
    real = tmp_path / "real"
    real.write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (link, fifo):
        with pytest.raises(FileExistsError, match="not a regular file"):
            atomic_write(target, "new")
    assert link.is_symlink() and real.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link", "real"]
    atomic_write(tmp_path / "new", "x")
    atomic_write(real, "y")
    assert real.read_text() == "y"
