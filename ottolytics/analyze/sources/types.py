"""The column types every source reads, derived from the store's schema.

``SOURCE_TYPES`` maps each store table the read path uses to its columns and
their DuckDB types. It is not written by hand: the migrations are applied to an
in-memory SQLite database and each table's declared types are read back with
``PRAGMA table_info``, so a column a migration adds is typed here at once.
Columns the read path never reads (``UNREAD``) are left out: a filtered read
sends every column it names through SQLite as text, which costs per value.

The frames' column contract (``RUN_COLUMNS``, ``TASK_COLUMNS``,
``TRANSITION_COLUMNS``) is here too: every source gives relations of that shape.
"""

__all__ = ["SOURCE_TYPES", "schema_types", "READ_TABLES", "UNREAD", "DUCKDB_TYPES",
           "RUN_COLUMNS", "TASK_COLUMNS", "TRANSITION_COLUMNS", "PARAM_COLUMNS",
           "DEP_COLUMNS", "LOG_COLUMNS", "LOG_PATH_COLUMNS", "TAIL_COLUMNS",
           "DISK_SAMPLE_COLUMNS", "FACT_COLUMNS", "COLUMN_TYPES", "RELATION_TYPES"]

import sqlite3

from ottolytics.store.migrations import MIGRATIONS

# The store tables the read path reads.
READ_TABLES = ("runs", "projects", "tasks", "task_stderr", "task_deps", "status_log",
               "run_params", "log_fragments", "disk_samples")

# Columns of those tables that no relation reads (liveness and bookkeeping).
UNREAD = {"runs": ("pid", "pid_started_at"), "projects": ("created_at",),
          "tasks": ("pid", "pid_started_at"), "status_log": ("id",),
          "log_fragments": ("id",)}

# SQLite's declared type -> DuckDB's (the schema declares only these).
DUCKDB_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE", "TEXT": "VARCHAR"}


def schema_types(migrations=MIGRATIONS, tables=READ_TABLES, unread=None):
    """{table: {column: DuckDB type}} of the schema *migrations* build, in the
    tables' column order. Raises ValueError for a declared type not in
    DUCKDB_TYPES (a schema change this module must learn)."""
    unread = UNREAD if unread is None else unread
    con = sqlite3.connect(":memory:")
    try:
        for _number, _name, statements in migrations:
            for statement in statements:
                con.execute(statement)
        types = {}
        for table in tables:
            columns = {}
            for _cid, name, declared, _notnull, _default, _pk in con.execute(
                    f"PRAGMA table_info({table})"):
                if name in unread.get(table, ()):
                    continue
                if declared.upper() not in DUCKDB_TYPES:
                    raise ValueError(f"{table}.{name}: declared {declared!r}, which the read "
                                     f"path has no DuckDB type for")
                columns[name] = DUCKDB_TYPES[declared.upper()]
            if not columns:
                raise ValueError(f"{table}: no such table in the schema")
            types[table] = columns
        return types
    finally:
        con.close()


SOURCE_TYPES = schema_types()

RUN_COLUMNS = ["run_id", "project", "status", "started_at", "finished_at", "duration_s",
               "host", "user", "cwd", "ottofile", "args", "run_dir", "size_bytes", "source",
               "source_ref", "derived"]
TASK_COLUMNS = ["run_id", "project", "host", "task", "attempt", "status", "started_at",
                "finished_at", "duration_s", "exit_code", "signal", "cpu_user_s", "cpu_system_s",
                "peak_rss_bytes", "script_hash", "script_path", "stdout_path", "stderr_path",
                "derived", "run_started_at"]
TRANSITION_COLUMNS = ["run_id", "task", "attempt", "from_status", "to_status", "at", "reason"]
PARAM_COLUMNS = ["run_id", "key", "value"]
DEP_COLUMNS = ["run_id", "task", "attempt", "depends_on"]
LOG_COLUMNS = ["run_id", "task", "attempt", "stream", "seq", "at", "text"]
LOG_PATH_COLUMNS = ["run_id", "task", "attempt", "started_at", "source", "run_dir_stored",
                    "stdout_stored", "stderr_stored", "store_index"]
TAIL_COLUMNS = ["run_id", "task", "attempt", "started_at", "tail"]
DISK_SAMPLE_COLUMNS = ["measured_at", "project", "runs", "run_bytes", "cache_bytes",
                       "orphan_cache_bytes", "other_bytes", "total_bytes"]
# The DuckDB type of each contract column, by name (a name has one type in every
# relation, but for RELATION_TYPES'); a source's empty relation is typed by these.
_TIMESTAMP = "TIMESTAMPTZ"
COLUMN_TYPES = {
    **{c: "VARCHAR" for c in (
        "run_id", "project", "status", "host", "user", "cwd", "ottofile", "args", "run_dir",
        "source", "source_ref", "derived", "task", "script_hash", "script_path",
        "stdout_path", "stderr_path", "from_status", "to_status", "reason", "key", "value",
        "depends_on", "stream", "text", "run_dir_stored", "stdout_stored", "stderr_stored",
        "tail", "stderr_tail", "run_key")},
    **{c: _TIMESTAMP for c in ("started_at", "finished_at", "run_started_at", "at",
                               "measured_at")},
    **{c: "BIGINT" for c in ("size_bytes", "attempt", "exit_code", "signal", "peak_rss_bytes",
                             "seq", "runs", "run_bytes", "cache_bytes", "orphan_cache_bytes",
                             "other_bytes", "total_bytes")},
    **{c: "DOUBLE" for c in ("duration_s", "cpu_user_s", "cpu_system_s", "started_s")},
    "store_index": "INTEGER",
}
# Where a relation's column differs from COLUMN_TYPES (the status enums).
RELATION_TYPES = {"runs": {"status": "run_status"},
                  "tasks": {"status": "task_status", "depends_on": "VARCHAR[]"}}

# What analytics aggregate: the lean task rows (see Source.facts).
FACT_COLUMNS = ["task", "status", "attempt", "started_at", "started_s", "duration_s",
                "script_hash", "run_key"]
