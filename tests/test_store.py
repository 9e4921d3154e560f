import sqlite3
import threading
import time

import pytest

from ottolytics.store.connection import Store, StoreBusy


def test_connection_settings(db):
    store = Store.open(db)
    c = store.conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    store.close()


def test_store_created_with_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "ottolytics.db"
    Store.open(path).close()
    assert path.exists()


def test_write_rolls_back_on_error(db):
    store = Store.open(db)

    def bad(conn):
        conn.execute("INSERT INTO projects(name, created_at) VALUES ('x', 0)")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        store.write(bad)
    assert store.conn.execute("SELECT count(*) FROM projects").fetchone()[0] == 0
    assert not store.conn.in_transaction
    store.close()


def test_write_waits_for_a_short_lock(db, monkeypatch):
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "2")
    store = Store.open(db)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    store.write(lambda conn: conn.execute(
        "INSERT INTO projects(name, created_at) VALUES ('x', 0)"))
    assert store.conn.execute("SELECT count(*) FROM projects").fetchone()[0] == 1
    holder.close()
    store.close()


def test_write_gives_up_with_store_busy_after_bounded_retries(db, monkeypatch):
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "0.1")
    store = Store.open(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    with pytest.raises(StoreBusy, match="still locked"):
        store.write(lambda conn: conn.execute(
            "INSERT INTO projects(name, created_at) VALUES ('x', 0)"))
    assert time.monotonic() - t0 < 5
    holder.execute("ROLLBACK")
    holder.close()
    assert store.conn.execute("SELECT count(*) FROM projects").fetchone()[0] == 0
    store.close()
