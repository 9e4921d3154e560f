"""The interface every backend of the read engine implements.

A ``Source`` turns filters into SQL for DuckDB: one relation each for runs,
tasks, transitions, params, dependencies, log fragments, log paths, stderr
tails and disk samples, all in the frames' column contract (``types``). A
History holds one source and runs every frame and analysis through it, so a new
backend (a shared PostgreSQL history, a live dashboard's tables) is a new
subclass here and nothing in the analytics changes.

*Filters* are a dict with the keys ``since`` and ``until`` (unix seconds or
None), ``project``, ``task``, ``status`` and ``run`` (lists of values or None).
*scope* is whatever the source's ``query`` hands to the SQL it builds: the
attached stores' aliases for SQLite, nothing for a dataset of files.

A subclass must implement ``query``, ``runs``, ``tasks``, ``transitions`` and
``params``; the others have defaults derived from those (``facts``, ``deps``,
``tails``, ``run_candidates``) or are empty where a backend does not keep such
rows (``logs``, ``log_paths``, ``disk_samples``).
"""

from typing import Any, Callable, Dict, Sequence

from ottolytics.analyze import duck
from ottolytics.analyze.sources.types import (
    COLUMN_TYPES, RELATION_TYPES, DEP_COLUMNS, DISK_SAMPLE_COLUMNS, LOG_COLUMNS, LOG_PATH_COLUMNS, PARAM_COLUMNS, RUN_COLUMNS,
    TASK_COLUMNS, TRANSITION_COLUMNS)
from ottolytics.core.values import FIRST_SECOND, LAST_SECOND

__all__ = ["Source", "Relations", "Filters", "literal", "empty", "ts", "secs", "NO_FILTERS"]

Filters = Dict[str, Any]   # since, until, project, task, status, run (see above)

NO_FILTERS = {"since": None, "until": None, "project": None, "task": None, "status": None,
              "run": None}


def literal(value):
    """A value inlined into SQL (DuckDB's or SQLite's; both read it alike)."""
    return duck.sqlite_literal(value)


def secs(expr):
    """Unix seconds *expr* as a number readers can show as a time, else NULL: a
    time outside 0001-9999 (rows are untrusted: 1e20) is unknown, by the rule of
    core/values.py, instead of failing the whole query or making a duration of
    -1e20. The one guard of stored seconds in the read engine."""
    return f"(CASE WHEN ({expr}) BETWEEN {FIRST_SECOND} AND {LAST_SECOND} THEN ({expr}) END)"


def ts(expr):
    """Unix seconds -> TIMESTAMPTZ; exported to Arrow as timestamp[us, UTC] (the
    session's TimeZone is UTC), so pandas gets tz-aware columns without a copy.
    Out of range is NULL (secs). The conversion itself only ever sees a value in
    range (clamped): DuckDB converts a dictionary-encoded column's whole
    dictionary, whatever a CASE around or inside the conversion says."""
    return (f"CASE WHEN {secs(expr)} IS NOT NULL THEN to_timestamp(least(greatest(({expr}), "
            f"{FIRST_SECOND}), {LAST_SECOND})) END")


def _ident(name):
    return '"' + str(name).replace('"', '""') + '"'


def empty(columns, relation=None):
    """A relation with *columns* and no rows, each column of its contract type
    (``types.COLUMN_TYPES``, as *relation*'s ``types.RELATION_TYPES`` change it)."""
    types = {**COLUMN_TYPES, **RELATION_TYPES.get(relation, {})}
    return "SELECT " + ", ".join(f"CAST(NULL AS {types[c]}) AS {_ident(c)}"
                                 for c in columns) + " WHERE false"


class Source:
    """One backend of the read engine (see the module's docstring)."""

    #: What the source reads (files or directories), for messages and ``h.paths``.
    paths: Sequence[str] = ()
    #: The directory each store's relative paths resolve against (``h.homes``).
    homes: Sequence[str] = ()
    #: Whether its DuckDB connection needs the sqlite scanner loaded.
    sqlite_scanner: bool = False

    def prepare(self, con: Any) -> None:
        """Set up a new DuckDB connection for this source (called once)."""

    def query(self, con: Any, build: Callable[[Any], str], fetch: Callable[[Any], Any]) -> Any:
        """Run the SQL ``build(scope)`` returns on *con*, and return ``fetch(result)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds."""

    def state(self, con: Any) -> Any:
        """A token of what the source reads as of now, brought up to date on
        *con* first: equal tokens mean the same rows, so a History may give an
        answer it already computed again (``History.keep_answers``). None (this
        default): not known, nothing is kept."""
        return None

    # -- the relations a subclass must give ------------------------------------

    def runs(self, scope: Any, f: Filters, status: bool = True) -> str:
        """RUN_COLUMNS, one row per run the filters keep (*status*: apply the
        status filter; False keeps the runs whatever their status)."""
        raise NotImplementedError

    def tasks(self, scope: Any, f: Filters, status: bool = True, with_tail: bool = False,
              with_deps: bool = False) -> str:
        """TASK_COLUMNS, one row per task attempt; *with_tail* adds
        ``stderr_tail``, *with_deps* ``depends_on`` (a list of task names)."""
        raise NotImplementedError

    def transitions(self, scope: Any, f: Filters) -> str:
        """TRANSITION_COLUMNS, every status change of the runs the filters keep
        (whatever their status)."""
        raise NotImplementedError

    def params(self, scope: Any, f: Filters) -> str:
        """PARAM_COLUMNS (long: run_id, key, value) of the runs the filters keep."""
        raise NotImplementedError

    # -- derived, or empty: a backend overrides what it can do better -------------

    def facts(self, scope: Any, f: Filters, need: Sequence[str] = ()) -> str:
        """Lean task rows for aggregations: task, status (text), attempt,
        started_at, started_s (unix seconds), duration_s, script_hash and run_key
        (unique across stores), plus project, host, run_id and run_started_at
        when *need* names them (a backend may add them always)."""
        return (f"SELECT task, CAST(status AS VARCHAR) AS status, attempt, started_at, "
                f"epoch(started_at) AS started_s, duration_s, script_hash, run_id AS run_key, "
                f"run_id, host, run_started_at, project FROM ({self.tasks(scope, f)})")

    def run_keys(self, scope: Any, f: Filters) -> str:
        """(run_key, run_id): the run id each of facts' run keys names, for the
        runs the filters keep whatever their status. An aggregation over facts
        groups by the key and names the few runs of its answer after."""
        return f"SELECT run_id AS run_key, run_id FROM ({self.runs(scope, f, status=False)})"

    def deps(self, scope: Any, f: Filters) -> str:
        """DEP_COLUMNS for the tasks the filters keep (whatever their status)."""
        return (f"SELECT run_id, task, attempt, unnest(depends_on) AS depends_on "
                f"FROM ({self.tasks(scope, dict(f, status=None), False, with_deps=True)}) "
                f"WHERE depends_on IS NOT NULL")

    def tails(self, scope: Any, f: Filters) -> str:
        """(run_id, task, attempt, started_at, tail): the stored stderr tails."""
        return (f"SELECT run_id, task, attempt, started_at, stderr_tail AS tail "
                f"FROM ({self.tasks(scope, f, status=False, with_tail=True)}) "
                f"WHERE stderr_tail IS NOT NULL")

    def logs(self, scope: Any, f: Filters) -> str:
        """LOG_COLUMNS: the stored log fragments (none by default)."""
        return empty(LOG_COLUMNS)

    def log_paths(self, scope: Any, f: Filters) -> str:
        """LOG_PATH_COLUMNS: the tasks with stored log paths this machine may
        read, with what the read rule needs (store_index indexes ``homes``);
        none by default, for a source whose paths are other machines'."""
        return empty(LOG_PATH_COLUMNS)

    def disk_samples(self, scope: Any, f: Filters) -> str:
        """DISK_SAMPLE_COLUMNS: what ``ottolytics usage`` measured (none by default)."""
        return empty(DISK_SAMPLE_COLUMNS)

    def run_candidates(self, scope: Any, f: Filters, ref: str, clause: "str | None",
                       fetched: int) -> str:
        """(run_id, started_at as unix seconds, source) of the runs *ref* may
        name: the newest run when *clause* is None ('latest'), else those whose
        id is *ref* or starts with it, or that started in the second *ref* names.
        At most *fetched* per kind are needed; see runinfo.choose."""
        lit = literal(ref)
        cond = "true" if clause is None else (
            f"run_id = {lit} OR starts_with(run_id, {lit})"
            + (f" OR (epoch(started_at) >= {int(ref)} AND epoch(started_at) < "
               f"{int(ref) + 1})" if ref.isdigit() and len(ref) <= 12 else ""))
        return (f"SELECT run_id, epoch(started_at), source FROM ({self.runs(scope, f)}) "
                f"WHERE {cond} ORDER BY started_at DESC LIMIT "
                f"{1 if clause is None else 10 * fetched}")


class Relations:
    """A source's relations inside one query, with a History's filters as the
    default: what analytics build their SQL from (``h._query(lambda r: ...)``)."""

    def __init__(self, source, scope, filters):
        self.source, self.scope, self.filters = source, scope, filters

    def runs(self, f=None, status=True):
        return self.source.runs(self.scope, f or self.filters, status)

    def tasks(self, f=None, status=True, with_tail=False, with_deps=False):
        return self.source.tasks(self.scope, f or self.filters, status, with_tail, with_deps)

    def transitions(self, f=None):
        return self.source.transitions(self.scope, f or self.filters)

    def params(self, f=None):
        return self.source.params(self.scope, f or self.filters)

    def facts(self, need=(), f=None):
        return self.source.facts(self.scope, f or self.filters, need)

    def run_keys(self, f=None):
        return self.source.run_keys(self.scope, f or self.filters)

    def deps(self, f=None):
        return self.source.deps(self.scope, f or self.filters)

    def tails(self, f=None):
        return self.source.tails(self.scope, f or self.filters)

    def logs(self, f=None):
        return self.source.logs(self.scope, f or self.filters)

    def log_paths(self, f=None):
        return self.source.log_paths(self.scope, f or self.filters)

    def disk_samples(self, f=None):
        return self.source.disk_samples(self.scope, f or self.filters)


# The shape of each relation, for sources that build empty ones.
SHAPES = {"runs": RUN_COLUMNS, "tasks": TASK_COLUMNS, "transitions": TRANSITION_COLUMNS,
          "params": PARAM_COLUMNS, "deps": DEP_COLUMNS}
