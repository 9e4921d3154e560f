"""``SqliteSource``: the ottolytics stores (one or several, read as one).

Each query attaches the stores read-only (``duck.Stores``) as s0, s1, …; the
filters become WHERE clauses that SQLite runs itself through ``sqlite_query``
with its indexes, so a narrow question reads few rows, and only the columns a
relation needs cross over (as text, cast back to ``SOURCE_TYPES``).
"""

__all__ = ["SqliteSource"]

import os

from ottolytics.analyze import duck
from ottolytics.analyze.sources.base import Source, literal, secs, ts as _ts
from ottolytics.analyze.sources.types import SOURCE_TYPES
from ottolytics.core.paths import run_dir_sql, stored_path_sql
from ottolytics.store.statuses import UNFINISHED, sql_in

AT_X = 'x."at"'  # "at" is a keyword in DuckDB
AT_L = 'l."at"'


def _path_expr(column, run_dir, home):
    """A stored path made absolute: see the README's 'Where things live'. Built by
    paths.stored_path_sql, the SQL twin of paths.task_path_from_stored."""
    return stored_path_sql(column, run_dir, home)


def _run_dir_expr(run_dir, home):
    return run_dir_sql(run_dir, home)


RUN_KEY_STRIDE = 1 << 40  # facts' run_key: store index * this + the run's row id


class SqliteSource(Source):
    """The SQLite stores at *paths*; *home* (or each store's directory) is what
    their relative paths resolve against."""

    def __init__(self, paths, home=None):
        self.paths = [os.path.abspath(str(p)) for p in paths]
        self.stores = duck.Stores(self.paths)
        self.homes = [os.path.abspath(home) if home else os.path.dirname(p) for p in self.paths]

    def prepare(self, con):
        if len(self.paths) > 1:
            # DuckDB 1.5.5's join reordering confuses same-named tables of two attached
            # SQLite stores inside one UNION ALL and reads the first store twice. Our
            # queries are written in a good join order already, so it is turned off.
            con.execute("SET disabled_optimizers = 'join_order'")

    def query(self, con, build, fetch):
        return self.stores.query(con, build, fetch)

    def close(self):
        self.stores.close()

    # -- reading one store: a typed scan, or a filtered query run by SQLite ----

    def _run_where(self, f):
        """Clauses on runs, in SQLite's SQL (they use its runs indexes)."""
        clauses = []
        if f["since"] is not None:
            clauses.append(f"started_at >= {literal(f['since'])}")
        if f["until"] is not None:
            clauses.append(f"started_at < {literal(f['until'])}")
        if f["project"]:
            names = ", ".join(literal(p) for p in f["project"])
            clauses.append(f"project_id IN (SELECT id FROM projects WHERE name IN ({names}))")
        if f.get("run"):
            clauses.append("uid IN (" + ", ".join(map(literal, f["run"])) + ")")
        return clauses

    def _status_clause(self, f):
        return "status IN (" + ", ".join(map(literal, f["status"])) + ")"

    def _runs_where(self, f, with_status=True):
        clauses = self._run_where(f)
        if f["task"]:  # runs that ran such a task
            names = ", ".join(map(literal, f["task"]))
            clauses.append(f"id IN (SELECT run_id FROM tasks WHERE name IN ({names}))")
        if with_status and f["status"]:
            clauses.append(self._status_clause(f))
        return clauses

    def _tasks_where(self, f, with_status=True):
        clauses = []
        run_clauses = self._run_where(f)
        if run_clauses:
            clauses.append("run_id IN (SELECT id FROM runs WHERE " + " AND ".join(run_clauses)
                           + ")")
        if f["task"]:
            clauses.append("name IN (" + ", ".join(map(literal, f["task"])) + ")")
        if with_status and f["status"]:
            clauses.append(self._status_clause(f))
        return clauses

    def _rel(self, alias, table, clauses=(), columns=None):
        """One store's *table* as a typed DuckDB relation.

        Without clauses: DuckDB scans the table (typed, fast for whole tables).
        With clauses: SQLite runs the WHERE itself through sqlite_query, using
        its indexes, so only matching rows cross over (sqlite_query returns text,
        hence the casts, and the *columns* list: text costs ~3 µs a value)."""
        columns = {c: t for c, t in SOURCE_TYPES[table].items()
                   if columns is None or c in columns}
        if not clauses:
            source = f"{alias}.{table}"
        else:
            sql = (f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)} FROM {table} WHERE "
                   + " AND ".join(f"({c})" for c in clauses))
            source = f"sqlite_query({literal(alias)}, {literal(sql)})"
        casts = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns.items())
        return f"(SELECT {casts} FROM {source})"

    def _sqlite_tasks_ids(self, f, with_status=True):
        """SQLite SQL selecting the ids of the tasks the filters keep."""
        clauses = self._tasks_where(f, with_status)
        return "SELECT id FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "")

    def _by_run(self, f):
        run_clauses = self._run_where(f)
        return ["run_id IN (SELECT id FROM runs WHERE " + " AND ".join(run_clauses) + ")"] \
            if run_clauses else []

    def _ids_clause(self, f, column="task_id", status=True):
        """Restrict a relation to the kept tasks in SQLite, or not at all when the
        filters keep everything (then a typed scan is much faster)."""
        if not self._tasks_where(f, status):
            return []
        return [f"{column} IN ({self._sqlite_tasks_ids(f, status)})"]

    # -- DuckDB relations over all stores -----------------------------------

    def runs(self, aliases, f, status=True, internal=False):
        """Runs of all stores; *internal* adds the store's own keys (_store, _rid)."""
        parts = []
        for i, (alias, home) in enumerate(zip(aliases, self.homes)):
            keys = f", {i} AS _store, r.id AS _rid" if internal else ""
            parts.append(
                f"SELECT r.uid AS run_id, p.name AS project, "
                f"CAST(r.status AS run_status) AS status, {_ts('r.started_at')} AS started_at, "
                f"{_ts('r.finished_at')} AS finished_at, "
                f"{secs('r.finished_at')} - {secs('r.started_at')} AS duration_s, r.host, r.user, "
                f"r.cwd, r.ottofile, "
                f"r.args, {_run_dir_expr('r.run_dir', home)} AS run_dir, r.size_bytes, r.source, "
                f"r.source_ref, r.derived{keys} "
                f"FROM {self._rel(alias, 'runs', self._runs_where(f, status))} r "
                f"JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id")
        return " UNION ALL ".join(parts)

    #: The task_stderr relation has each tail's signature and message (the mirror's).
    signs_tails = False
    sqlite_scanner = True  # the stores are attached through it

    def tasks(self, aliases, f, status=True, with_tail=False, with_deps=False, internal=False,
              signed=False):
        """Tasks of all stores; with_tail adds stderr_tail (kept out of the hot table),
        with_deps the list of names each task depends on, internal the store's own
        keys (_store, _tid, _logged, _rid: the run's) for joining other tables
        without a rescan, signed (with with_tail, where signs_tails) the tail's
        _signature and _message."""
        parts = []
        for i, (alias, home) in enumerate(zip(aliases, self.homes)):
            rd = "r.run_dir"
            tail_col = tail_join = ""
            if internal:
                tail_col += (f", {i} AS _store, t.id AS _tid, t.status_logged AS _logged, "
                             f"t.run_id AS _rid")
            if with_deps:  # grouped by the integer task id inside the store, then joined
                deps = (f"SELECT task_id, list(depends_on ORDER BY depends_on) AS depends_on "
                        f"FROM {self._rel(alias, 'task_deps', self._ids_clause(f, status=status))} "
                        f"GROUP BY task_id")
                tail_col += ", dp.depends_on"
                tail_join += f" LEFT JOIN ({deps}) dp ON dp.task_id = t.id"
            if with_tail:
                tail_col += ", s.tail AS stderr_tail"
                if signed and self.signs_tails:
                    tail_col += ", s.signature AS _signature, s.message AS _message"
                tail_join += (f" LEFT JOIN {self._rel(alias, 'task_stderr', self._ids_clause(f, status=status))}"  # noqa: E501
                             " s ON s.task_id = t.id")
            parts.append(
                f"SELECT r.uid AS run_id, p.name AS project, r.host, t.name AS task, t.attempt, "
                f"CAST(t.status AS task_status) AS status, {_ts('t.started_at')} AS started_at, "
                f"{_ts('t.finished_at')} AS finished_at, "
                f"{secs('t.finished_at')} - {secs('t.started_at')} AS duration_s, t.exit_code, "
                f"t.signal, "
                f"t.cpu_user_s, t.cpu_system_s, t.peak_rss_bytes, t.script_hash, "
                f"{_path_expr('t.script_path', rd, home)} AS script_path, "
                f"{_path_expr('t.stdout_path', rd, home)} AS stdout_path, "
                f"{_path_expr('t.stderr_path', rd, home)} AS stderr_path, t.derived, "
                f"{_ts('r.started_at')} AS run_started_at{tail_col} "
                f"FROM {self._rel(alias, 'tasks', self._tasks_where(f, status))} t "
                f"JOIN {self._rel(alias, 'runs', self._runs_where(f, with_status=False))} r "
                f"ON r.id = t.run_id "
                f"JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id{tail_join}")
        return " UNION ALL ".join(parts)

    def facts(self, aliases, f, need=()):
        """Lean task rows for aggregations: task, status, started_at (a TIMESTAMP),
        duration_s, attempt and run_key (unique across stores), plus project,
        host or run_id (the uid) only when *need* names them, since those take
        joins."""
        parts = []
        for i, alias in enumerate(aliases):
            cols = self._facts_columns(i)
            joins = ""
            if {"project", "host", "run_id", "run_started_at"} & set(need):
                wanted = [c for c in ("uid", "host", "started_at") if
                          {"uid": "run_id", "started_at": "run_started_at"}.get(c, c) in need]
                joins = (f" JOIN {self._rel(alias, 'runs', self._runs_where(f, False), ['id', 'project_id'] + wanted)} r "  # noqa: E501
                         f"ON r.id = t.run_id")
                cols += "".join({"uid": ", r.uid AS run_id", "host": ", r.host",
                                 "started_at": f", {_ts('r.started_at')} AS run_started_at"}[c]
                                for c in wanted)
                if "project" in need:
                    joins += f" JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id"
                    cols += ", p.name AS project"
            parts.append(f"SELECT {cols} FROM "
                         f"{self._rel(alias, 'tasks', self._tasks_where(f), self.FACTS_COLUMNS)} "
                         f"t{joins}")
        return " UNION ALL ".join(parts)

    # The tasks' columns facts read, and what it makes of them (store *i*'s).
    FACTS_COLUMNS = ("run_id", "name", "status", "attempt", "started_at", "finished_at",
                     "script_hash")

    @staticmethod
    def _facts_columns(i):
        return (f"t.name AS task, t.status, t.attempt, {_ts('t.started_at')} AS started_at, "
                f"{secs('t.started_at')} AS started_s, "
                f"{secs('t.finished_at')} - {secs('t.started_at')} AS duration_s, t.script_hash, "
                f"{i} * {RUN_KEY_STRIDE} + t.run_id AS run_key")

    def run_keys(self, aliases, f):
        return " UNION ALL ".join(
            f"SELECT {i} * {RUN_KEY_STRIDE} + r.id AS run_key, r.uid AS run_id "
            f"FROM {self._rel(alias, 'runs', self._runs_where(f, False), ['id', 'uid'])} r"
            for i, alias in enumerate(aliases))

    def transitions(self, aliases, f):
        """Every status change, built in DuckDB from typed scans of tasks and
        status_log exactly as the store's ``transitions`` view builds it. The view
        itself is not read: DuckDB's sqlite scanner parses views with DuckDB's
        parser (which rejects its ``at`` alias), and having SQLite evaluate it
        would send every value back as text."""
        parts = []
        for alias in aliases:
            t = self._rel(alias, "tasks", self._by_run(f))
            r = self._rel(alias, "runs", self._runs_where(f, with_status=False))
            log = self._rel(alias, "status_log", self._by_run(f))
            parts.append(
                f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
                f"CAST(NULL AS VARCHAR) AS from_status, 'running' AS to_status, "
                f"{_ts('t.started_at')} AS \"at\", CAST(NULL AS VARCHAR) AS reason "
                f"FROM {t} t JOIN {r} r ON r.id = t.run_id WHERE t.status_logged = 0 "
                f"UNION ALL "
                f"SELECT r.uid, t.name, t.attempt, 'running', t.status, {_ts('t.finished_at')}, "
                f"NULL FROM {t} t JOIN {r} r ON r.id = t.run_id "
                f"WHERE t.status_logged = 0 AND t.status NOT IN {sql_in(UNFINISHED)} "
                f"UNION ALL "
                f"SELECT r.uid, t.name, t.attempt, x.from_status, x.to_status, "
                f"{_ts(AT_X)}, x.reason FROM {log} x JOIN {r} r ON r.id = x.run_id "
                f"LEFT JOIN {t} t ON t.id = x.task_id")
        return " UNION ALL ".join(parts)

    def deps(self, aliases, f):
        """(run_id, task, attempt, depends_on) for the tasks the filters keep."""
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, d.depends_on "
            f"FROM {self._rel(al, 'task_deps', self._ids_clause(f))} d "
            f"JOIN {self._rel(al, 'tasks', self._ids_clause(f, 'id'))} t ON t.id = d.task_id "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False))} r ON r.id = t.run_id"
            for al in aliases)

    def logs(self, aliases, f):
        """(run_id, task, attempt, stream, seq, at, text) of the stored log fragments."""
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, l.stream, l.seq, "
            f"{_ts(AT_L)} AS \"at\", l.data AS text "
            f"FROM {self._rel(al, 'log_fragments', self._by_run(f))} l "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False))} r ON r.id = l.run_id "
            f"LEFT JOIN {self._rel(al, 'tasks', self._by_run(f))} t ON t.id = l.task_id"
            for al in aliases)

    def log_paths(self, aliases, f):
        """The tasks with a stored log path, with what the read rule needs: run_id,
        task, attempt, started_at, source, and the raw stored run_dir,
        stdout_path and stderr_path, plus store_index (the store's index, for its home)."""
        parts = []
        for i, alias in enumerate(aliases):
            tasks = self._rel(alias, "tasks", self._tasks_where(f) + [
                "(stdout_path IS NOT NULL OR stderr_path IS NOT NULL)"],
                ["id", "run_id", "name", "attempt", "started_at", "stdout_path", "stderr_path"])
            runs = self._rel(alias, "runs", self._runs_where(f, with_status=False),
                             ["id", "uid", "source", "run_dir", "started_at"])
            parts.append(
                f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
                f"{_ts('t.started_at')} AS started_at, r.source, r.run_dir AS run_dir_stored, "
                f"t.stdout_path AS stdout_stored, t.stderr_path AS stderr_stored, "
                f"{i} AS store_index "
                f"FROM {tasks} t JOIN {runs} r ON r.id = t.run_id")
        return " UNION ALL ".join(parts)

    def tails(self, aliases, f):
        """(run_id, task, attempt, started_at, tail) of the stored stderr tails."""
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
            f"{_ts('t.started_at')} AS started_at, s.tail "
            f"FROM {self._rel(al, 'task_stderr', self._ids_clause(f, status=False))} s "
            f"JOIN {self._rel(al, 'tasks', self._ids_clause(f, 'id', status=False), ['id', 'run_id', 'name', 'attempt', 'started_at'])} t "  # noqa: E501
            f"ON t.id = s.task_id "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False), ['id', 'uid', 'started_at'])} r "  # noqa: E501
            f"ON r.id = t.run_id"
            for al in aliases)

    def params(self, aliases, f):
        parts = []
        for alias in aliases:
            parts.append(
                f"SELECT r.uid AS run_id, x.key, x.value "
                f"FROM {self._rel(alias, 'run_params', self._by_run(f))} x "
                f"JOIN {self._rel(alias, 'runs', self._runs_where(f, with_status=False))} r "
                f"ON r.id = x.run_id")
        return " UNION ALL ".join(parts)

    def disk_samples(self, aliases, f):
        """What ``ottolytics usage`` measured, per scan and project (time filters apply)."""
        where = [f"\"at\" >= {float(f['since'])}"] if f["since"] is not None else []
        where += [f"\"at\" < {float(f['until'])}"] if f["until"] is not None else []
        if f["project"]:
            where.append("project IN (" + ", ".join(map(literal, f["project"])) + ")")
        at = _ts('"at"')
        return " UNION ALL ".join(
            f"SELECT {at} AS measured_at, project, runs, run_bytes, "
            f"cache_bytes, orphan_cache_bytes, other_bytes, "
            f"run_bytes + cache_bytes + other_bytes AS total_bytes "
            f"FROM {self._rel(alias, 'disk_samples')}"
            + (" WHERE " + " AND ".join(where) if where else "") for alias in aliases)

    def run_candidates(self, aliases, f, ref, clause, fetched):
        """The runs *ref* may name, chosen inside SQLite with its indexes."""
        from ottolytics.manage.runinfo import ref_order
        parts = []
        for al in aliases:
            base = self._runs_where(f)
            where = " WHERE " + " AND ".join(base) if base else ""
            if clause is None:
                pick = f"started_at = (SELECT max(started_at) FROM runs{where})"
            else:
                pick = (f"id IN (SELECT id FROM runs WHERE {' AND '.join(base + [clause])} "
                        f"ORDER BY {ref_order(ref)} LIMIT {fetched})")
            rel = self._rel(al, "runs", base + [pick], ["uid", "started_at", "source"])
            parts.append(f"SELECT uid, started_at, source FROM {rel}")
        return " UNION ALL ".join(parts)
