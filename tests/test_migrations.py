import sqlite3

import pytest

from ottolytics.store import migrations
from ottolytics.store.migrations import CURRENT_VERSION, MIGRATIONS, NotAStore, SchemaTooNew
from ottolytics.store.connection import Store


def tables(conn):
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_fresh_store_is_at_current_version_with_history(db):
    store = Store.open(db)
    conn = store.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]
    assert {"runs", "tasks", "status_log", "run_params", "task_deps", "log_fragments",
            "task_stderr", "projects"} <= tables(conn)
    assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'transitions'"
                        ).fetchone() == ("view",)
    store.close()
    assert not list(db.parent.glob("*.bak")), "a new store needs no backup"


def test_newer_store_is_refused_and_left_byte_identical(db):
    Store.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {CURRENT_VERSION + 1}")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(SchemaTooNew, match="newer ottolytics"):
        Store.open(db)
    assert db.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    other = tmp_path / "otto.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE runs (id INTEGER)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(NotAStore, match="not an ottolytics store"):
        Store.open(other)
    assert other.read_bytes() == before


def _store_at(path, version, migration_list):
    """A store built by applying migrations up to *version*, with data in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn, path, [m for m in migration_list if m[0] <= version])
    conn.execute("INSERT INTO projects(name, created_at) VALUES ('web', 1)")
    conn.execute("INSERT INTO runs(uid, project_id, status, started_at) "
                 "VALUES ('r1', 1, 'success', 10.5)")
    conn.execute("INSERT INTO tasks(run_id, name, status, started_at, finished_at, exit_code) "
                 "VALUES (1, 'build', 'success', 11.0, 12.25, 0)")
    conn.close()


def _assert_data_kept(conn):
    assert conn.execute("SELECT uid, status, started_at FROM runs").fetchall() == [
        ("r1", "success", 10.5)]
    assert conn.execute("SELECT name, finished_at, exit_code FROM tasks").fetchall() == [
        ("build", 12.25, 0)]


@pytest.mark.parametrize("version", range(1, CURRENT_VERSION))
def test_migrates_from_every_earlier_version(tmp_path, version):
    path = tmp_path / "old.db"
    _store_at(path, version, MIGRATIONS)
    store = Store.open(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    _assert_data_kept(store.conn)
    store.close()
    assert list(tmp_path.glob(f"old.db.v{version}.*.bak"))


NEXT = CURRENT_VERSION + 1
ADD_COLUMN = (NEXT, "test: add a column", ["ALTER TABLE runs ADD COLUMN note TEXT",
                                           "UPDATE runs SET note = 'migrated'"])


def test_migration_to_a_next_version_backs_up_and_keeps_data(tmp_path):
    path = tmp_path / "s.db"
    _store_at(path, CURRENT_VERSION, MIGRATIONS)
    conn = sqlite3.connect(path, isolation_level=None)
    backup = migrations.migrate(conn, path, MIGRATIONS + [ADD_COLUMN])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == NEXT
    assert conn.execute("SELECT note FROM runs").fetchall() == [("migrated",)]
    _assert_data_kept(conn)
    conn.close()
    # The backup is a complete store at the old version.
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    _assert_data_kept(old)
    old.close()


def test_failing_migration_rolls_back_completely(tmp_path):
    path = tmp_path / "s.db"
    _store_at(path, CURRENT_VERSION, MIGRATIONS)
    broken = (NEXT, "test: broken", ["ALTER TABLE runs ADD COLUMN note TEXT",
                                     "THIS IS NOT SQL"])
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(conn, path, MIGRATIONS + [broken])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert "note" not in columns
    _assert_data_kept(conn)
    conn.close()
