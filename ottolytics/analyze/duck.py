"""DuckDB for the read path: an offline connection, and queries over the stores.

The sqlite scanner is loaded from the ``duckdb-extension-sqlite-scanner``
package by file path, with extension autoinstall and autoload off, so DuckDB
never downloads anything. Each query attaches the stores read-only, runs its
per-store SQL inside SQLite through ``sqlite_query`` (so filters use the
store's indexes and fewer rows cross over), and detaches them again. A store
that this process also has open through Python's sqlite3 is read from a
consistent snapshot instead (see ``inprocess``).
"""

__all__ = ["ReadError", "connect", "Stores", "sqlite_literal", "to_arrow", "to_pandas"]

import atexit
import os
import shutil
import sqlite3
import tempfile
import weakref

import duckdb

from ottolytics.store import inprocess
from ottolytics.core.errors import ReadError, StoreError

PACKAGE = "duckdb_extension_sqlite_scanner"



def extension_path():
    """The sqlite scanner extension built for the installed DuckDB."""
    version = duckdb.__version__
    hint = f"pip install 'duckdb-extension-sqlite-scanner=={version}'"
    try:
        import duckdb_extension_sqlite_scanner as package
    except ImportError:
        raise ReadError(f"DuckDB's sqlite scanner is not installed; {hint}") from None
    root = os.path.join(os.path.dirname(package.__file__), "extensions")
    path = os.path.join(root, f"v{version}", "sqlite_scanner.duckdb_extension")
    if not os.path.exists(path):
        built = sorted(os.listdir(root)) if os.path.isdir(root) else []
        raise ReadError(f"the sqlite scanner installed is built for DuckDB "
                        f"{', '.join(b.lstrip('v') for b in built) or 'nothing'}, "
                        f"not {version}; {hint}")
    return path


_OPEN = weakref.WeakSet()  # connections still open, closed before interpreter teardown


@atexit.register
def _close_all():
    """Close DuckDB connections while the interpreter is whole: left to teardown,
    their destructors run in arbitrary order beside the extension's."""
    for con in list(_OPEN):
        try:
            con.close()
        except Exception:
            pass


def connect(scanner=True):
    """An in-memory DuckDB, never downloading, with the sqlite scanner loaded
    (*scanner*: loading it takes a tenth of a second, which a connection that
    reads only Parquet and Arrow, such as the mirror's, does without)."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    _OPEN.add(con)
    # DuckDB draws a progress bar on stdout for a query past 2 s: not in our output.
    # (Under Jupyter, changing that setting wants ipywidgets; there the bar is a
    # widget, not text on stdout, so it may stay.)
    for setting in ("enable_progress_bar", "enable_progress_bar_print"):
        try:
            con.execute(f"SET {setting} = false")
            break
        except duckdb.Error:
            continue
    if not scanner:
        return con
    path = extension_path()
    try:
        con.execute(f"LOAD '{_quote(path)[1:-1]}'")
    except duckdb.Error as exc:
        raise ReadError(f"cannot load {path} ({exc}); reinstall it: pip install "
                        f"--force-reinstall 'duckdb-extension-sqlite-scanner=="
                        f"{duckdb.__version__}'") from None
    return con


def _quote(text):
    return "'" + str(text).replace("'", "''") + "'"


def sqlite_literal(value):
    """A value inlined into SQL sent to SQLite (sqlite_query takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(int(value))
    return _quote(value)


def _bring_up_to_date(path):
    """Check the store reads (not locked, not damaged, not foreign or newer; the
    one-line StoreError says what is wrong); one written by an older ottolytics
    is migrated (with its backup) by opening it."""
    from ottolytics.store.connection import open_readonly
    open_readonly(path).close()


def _in_one_transaction(con, sql, fetch):
    """Run *sql* and *fetch* its result inside one explicit transaction.

    The Python client prepares a statement and then executes it; in autocommit
    mode those are two transactions. The sqlite scanner of DuckDB 1.5.5 keeps, in
    sqlite_query's bind data, a pointer to the SQLite connection of the
    transaction that bound it, which is gone by execution: an intermittent
    segfault (duckdb/duckdb-sqlite#224, fixed upstream after the 1.5.5 wheel).
    One transaction around both keeps that connection alive throughout.

    That same pointer is all the sqlite_query scans of a statement get: one SQLite
    connection, which SQLite allows on one thread at a time, while DuckDB runs a
    join's pipelines on several (a SIGSEGV or a corrupted heap every few hundred
    filtered reads, within seconds with 8 threads). A statement that reads through
    sqlite_query therefore runs on one thread; whole-table scans of an attached
    store, which open their own connections, keep every thread."""
    one_thread = sql is not None and "sqlite_query(" in sql
    if one_thread:
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        con.execute("SET threads = 1")
    con.execute("BEGIN TRANSACTION")
    try:
        result = fetch(con.execute(sql) if sql is not None else None)
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    finally:
        if one_thread:
            con.execute(f"SET threads = {int(threads)}")
    con.execute("COMMIT")
    return result


def _wal_without_writer(path):
    """A WAL store with no -wal file: reading it creates -wal and -shm."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2 and not os.path.exists(path + "-wal")


def _release_wal(path):
    from ottolytics.store.connection import _release_wal as release
    release(path)


class _BadText(Exception):
    """A store's text is not UTF-8 (located and explained by Stores.query)."""


def _is_text_error(exc):
    text = str(exc).lower()
    return "invalid unicode" in text or "utf-8" in text or "utf8" in text


def _first_bad_text(con, alias):
    """'table.column' of the first text in the attached store *alias* that is not
    UTF-8, or None. Checked once per store before its first query: DuckDB does
    not check a store's text as it reads it, and string operations on such bytes
    can give wrong results (a group key cut short) instead of an error."""
    columns = {}
    for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? "
            "AND data_type = 'VARCHAR' ORDER BY table_name, column_index", [alias]).fetchall():
        columns.setdefault(table, []).append(column)
    for table, names in columns.items():
        checks = ", ".join(
            f"count(*) FILTER (WHERE {_ident(c)} IS NOT NULL AND "
            f"try(decode(encode({_ident(c)}))) IS NULL)" for c in names)
        counts = con.execute(f"SELECT {checks} FROM {alias}.{_ident(table)}").fetchone()
        for name, count in zip(names, counts):
            if count:
                return f"{table}.{name}"
    return None


def _ident(name):
    return '"' + str(name).replace('"', '""') + '"'


def _valid_text(result):
    """*result* (an Arrow table or a pandas frame), after checking that its strings
    are UTF-8: DuckDB passes a store's invalid bytes on unchecked, and Arrow-backed
    strings only fail later, when displayed. Raises _BadText."""
    columns = []
    if hasattr(result, "schema") and hasattr(result, "columns"):  # pyarrow.Table
        columns = result.columns
    elif hasattr(result, "dtypes"):  # pandas: the Arrow-backed string columns
        for _, series in result.items():
            to_arrow = getattr(series.array, "__arrow_array__", None)
            if to_arrow is not None and "str" in str(series.dtype):
                columns.append(to_arrow())
    for column in columns:
        try:
            column.validate(full=True)
        except Exception as exc:
            if _is_text_error(exc):
                raise _BadText() from None
            raise
    return result


class Stores:
    """The stores a History reads, attached around each query."""

    def __init__(self, paths):
        self.paths = [os.path.abspath(p) for p in paths]
        for path in self.paths:
            if not os.path.exists(path):
                raise ReadError(f"{path}: no store here; record a run, run 'ottolytics sync', "
                                "or pass the right path")
            _bring_up_to_date(path)
        self._tmp = None
        self._writable = {}
        self._text_checked = set()  # stores whose text is known to be UTF-8

    def _snapshot(self, index, path):
        """A consistent copy of a store this process is writing, via SQLite's backup API."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="ottolytics-snapshot-")
        target = os.path.join(self._tmp, f"s{index}.db")
        from ottolytics.store.connection import open_readonly
        src = open_readonly(path)
        dest = sqlite3.connect(target)
        try:
            src.backup(dest)
        finally:
            dest.close()
            src.close()
        return target

    def query(self, con, build_sql, fetch):
        """Attach every store as s0, s1, …; run ``build_sql(aliases)``; detach.

        Held under inprocess.lock, so no sqlite3 connection to a store opens in
        this process while DuckDB reads it. Text that is not UTF-8 in a store
        (which DuckDB and Arrow cannot hold) raises NotUtf8, naming where it is.
        """
        try:
            return self._query(con, build_sql, lambda result: _valid_text(fetch(result)))
        except _BadText:
            raise self._where_not_utf8() from None

    def _where_not_utf8(self):
        """NotUtf8 naming the first table.column of the stores with such text."""
        from ottolytics.store.migrations import NotUtf8, invalid_text, not_utf8_message
        from ottolytics.store.connection import open_readonly
        for path in self.paths:
            try:
                conn = open_readonly(path)
            except StoreError as exc:
                return exc
            try:
                found = invalid_text(conn, first=True)
            finally:
                conn.close()
            if found:
                table, column = next(iter(found))
                return NotUtf8(not_utf8_message(path, f"{table}.{column}"))
        return NotUtf8(not_utf8_message(", ".join(self.paths)))

    def _query(self, con, build_sql, fetch):
        with inprocess.lock:
            aliases, released = [], []
            try:
                for i, path in enumerate(self.paths):
                    idle_wal = _wal_without_writer(path)
                    if idle_wal and path not in self._writable:
                        from ottolytics.store.connection import writable_dir
                        self._writable[path] = writable_dir(os.path.dirname(path))
                    if inprocess.is_open(path) or (idle_wal and not self._writable[path]):
                        # read-only directory: DuckDB's SQLite could not create the
                        # -shm it needs (and takes no URI options); copy instead
                        source = self._snapshot(i, path)
                    else:
                        source = path
                        if idle_wal:
                            released.append(path)  # SQLite creates -wal/-shm: remove after
                    alias = f"s{i}"
                    con.execute(f"ATTACH {_quote(source)} AS {alias} (TYPE sqlite, READ_ONLY)")
                    aliases.append(alias)
                    if path not in self._text_checked:
                        bad = _in_one_transaction(con, None, lambda _: _first_bad_text(
                            con, alias))
                        if bad:
                            from ottolytics.store.migrations import NotUtf8, not_utf8_message
                            raise NotUtf8(not_utf8_message(path, bad))
                        self._text_checked.add(path)
                return _in_one_transaction(con, build_sql(aliases), fetch)
            except UnicodeDecodeError:
                raise _BadText() from None
            except duckdb.Error as exc:
                if _is_text_error(exc):
                    raise _BadText() from None
                if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                    from ottolytics.store.migrations import StoreLocked, locked_message
                    # the scanner waits its own fixed 5 s, whatever OTTOLYTICS_BUSY_TIMEOUT
                    raise StoreLocked(locked_message(", ".join(self.paths), 5)) from None
                raise ReadError(f"reading {', '.join(self.paths)}: {exc}") from None
            except StoreError:
                raise
            except Exception as exc:  # Arrow, converting a store's bytes
                if _is_text_error(exc):
                    raise _BadText() from None
                raise
            finally:
                for alias in aliases:
                    con.execute(f"DETACH {alias}")
                for path in released:
                    _release_wal(path)

    def close(self):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# -- results as the frames' contract ------------------------------------------

def to_arrow(result):
    """A DuckDB result as an Arrow table."""
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") \
        else result.fetch_arrow_table()


def to_pandas(result):
    """A DuckDB result as a pandas frame: nullable Int64 integers, Arrow-backed
    strings, tz-aware UTC timestamps, every column writable.

    Converted a column at a time, each dropped from the Arrow table once
    converted, so the two copies of a big result never coexist whole (with
    DuckDB's large string buffers, see History._query: ten million tasks peak
    at 1.4x the frame, against 1.6x converting the whole table)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    table = to_arrow(result)
    mapper = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype()}.get
    names, columns = table.column_names, {}
    for i in range(len(names)):  # by position: a query may repeat a column's name
        one, table = table.select([0]), table.remove_column(0)
        column = one.to_pandas(types_mapper=mapper, self_destruct=True).iloc[:, 0]
        del one
        if pd.api.types.is_datetime64_any_dtype(column) and column.dt.tz is None:
            column = column.dt.tz_localize("UTC")
        # A column without nulls is a view of Arrow's buffer, which is read-only:
        # a user's ``df.loc[i, col] = x`` would fail. Such a column is copied.
        values = getattr(column.array, "_ndarray", None)
        if isinstance(values, np.ndarray) and not values.flags.writeable:
            column = column.copy(deep=True)
        columns[i] = column
    df = pd.DataFrame(columns, copy=False)
    df.columns = names
    return df
