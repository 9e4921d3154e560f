"""The read engine's sources (issue 15): column types derived from the schema, and
a third backend, written here against the Source interface alone, that the
analytics run through unchanged."""

import sqlite3
import uuid

import pandas as pd
from pathlib import Path
import pytest

import ottolytics
from known_history import RUNS, T0, record
from ottolytics.analyze.history import History
from ottolytics.analyze.sources.base import Source
from ottolytics.analyze.sources.types import (
    DUCKDB_TYPES, READ_TABLES, SOURCE_TYPES, TASK_COLUMNS, UNREAD, schema_types)
from ottolytics.store.migrations import MIGRATIONS


# -- column types -------------------------------------------------------------------

def test_source_types_are_the_columns_of_a_real_store(db):
    """Every column of the tables the read path reads, as a store ottolytics made
    declares it (less the ones no relation reads), with its DuckDB type."""
    record(db, range(1))
    con = sqlite3.connect(db)
    try:
        for table in READ_TABLES:
            declared = {name: DUCKDB_TYPES[kind.upper()] for _cid, name, kind, *_rest
                        in con.execute(f"PRAGMA table_info({table})")
                        if name not in UNREAD.get(table, ())}
            assert SOURCE_TYPES[table] == declared, table
    finally:
        con.close()
    assert SOURCE_TYPES["tasks"]["started_at"] == "DOUBLE"
    assert SOURCE_TYPES["runs"]["size_bytes"] == "BIGINT"
    assert "pid" not in SOURCE_TYPES["runs"] and "derived" in SOURCE_TYPES["tasks"]


def test_a_column_a_migration_adds_is_typed_without_restating_it():
    more = MIGRATIONS + [(99, "test", ["ALTER TABLE tasks ADD COLUMN gpu_s REAL",
                                       "ALTER TABLE runs ADD COLUMN commit_sha TEXT"])]
    types = schema_types(more)
    assert types["tasks"]["gpu_s"] == "DOUBLE" and types["runs"]["commit_sha"] == "VARCHAR"
    assert "gpu_s" not in SOURCE_TYPES["tasks"]


def test_a_declared_type_the_read_path_cannot_map_is_an_error():
    odd = MIGRATIONS + [(99, "test", ["ALTER TABLE tasks ADD COLUMN blob_col BLOB"])]
    with pytest.raises(ValueError, match="tasks.blob_col"):
        schema_types(odd)


# -- a third backend ------------------------------------------------------------------

class FrameSource(Source):
    """A history held as pandas frames (as a live dashboard might hold it): the
    filters are applied in pandas and the kept rows registered with DuckDB. It
    implements only what Source requires (query, runs, tasks, transitions,
    params); everything else comes from the interface's defaults."""

    def __init__(self, frames):
        self.frames = frames
        self.paths = ["<frames>"]
        self.homes = []
        self.registered = []

    def query(self, con, build, fetch):
        try:
            return fetch(con.execute(build(con)))
        finally:
            for name in self.registered:
                con.unregister(name)
            self.registered.clear()

    def _register(self, con, df):
        name = f"frame_{uuid.uuid4().hex}"
        con.register(name, df)
        self.registered.append(name)
        return name

    def _kept_runs(self, f, status=True):
        runs = self.frames["runs"]
        keep = pd.Series(True, index=runs.index)
        if f["since"] is not None:
            keep &= runs["started_at"] >= pd.Timestamp(f["since"], unit="s", tz="UTC")
        if f["until"] is not None:
            keep &= runs["started_at"] < pd.Timestamp(f["until"], unit="s", tz="UTC")
        if f["project"]:
            keep &= runs["project"].isin(f["project"])
        if f.get("run"):
            keep &= runs["run_id"].isin(f["run"])
        if f["task"]:
            tasks = self.frames["tasks"]
            keep &= runs["run_id"].isin(tasks.loc[tasks["task"].isin(f["task"]), "run_id"])
        if status and f["status"]:
            keep &= runs["status"].astype(str).isin(f["status"])
        return runs[keep]

    def runs(self, con, f, status=True):
        name = self._register(con, self._kept_runs(f, status))
        return f"SELECT * REPLACE (CAST(status AS VARCHAR)::run_status AS status) FROM {name}"

    def tasks(self, con, f, status=True, with_tail=False, with_deps=False):
        tasks = self.frames["tasks"]
        keep = tasks["run_id"].isin(self._kept_runs(dict(f, task=None), status=False)["run_id"])
        if f["task"]:
            keep &= tasks["task"].isin(f["task"])
        if status and f["status"]:
            keep &= tasks["status"].astype(str).isin(f["status"])
        columns = TASK_COLUMNS + (
            ["stderr_tail"] if with_tail else []) + (["depends_on"] if with_deps else [])
        name = self._register(con, tasks.loc[keep, columns])
        return f"SELECT * REPLACE (CAST(status AS VARCHAR)::task_status AS status) FROM {name}"

    def _of_kept_runs(self, con, table, f):
        df = self.frames[table]
        kept = self._kept_runs(dict(f, status=None), status=False)["run_id"]
        return f"SELECT * FROM {self._register(con, df[df['run_id'].isin(kept)])}"

    def transitions(self, con, f):
        return self._of_kept_runs(con, "transitions", f)

    def params(self, con, f):
        return self._of_kept_runs(con, "params", f)


def _frames(h):
    """The frames a FrameSource holds, taken from a store's History."""
    tasks = h._query(lambda r: f"SELECT * FROM ({r.tasks(with_tail=True, with_deps=True)})")
    tasks["status"] = tasks["status"].astype(str)
    runs = h.runs()
    runs["status"] = runs["status"].astype(str)
    long_params = h.sql("SELECT * FROM params")
    return {"runs": runs, "tasks": tasks, "transitions": h.transitions(),
            "params": long_params}


@pytest.fixture
def pair(db):
    record(db)
    store = ottolytics.open(db)
    frames = History(FrameSource(_frames(store)))
    yield store, frames
    frames.close()
    store.close()


def _same(a, b, keys):
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)


def test_a_third_backend_gives_the_frames(pair):
    store, frames = pair
    assert isinstance(frames, History) and frames.paths == ["<frames>"]
    _same(frames.runs(), store.runs(), ["run_id"])
    _same(frames.tasks(), store.tasks(), ["run_id", "task", "attempt"])
    _same(frames.params(), store.params(), ["run_id"])
    assert len(frames.transitions()) == len(store.transitions())
    assert frames.runs()["status"].dtype == store.runs()["status"].dtype   # the enum order


def test_analytics_run_through_a_third_backend_unchanged(pair):
    store, frames = pair
    for by in ("task", "project", ("project", "task")):
        _same(frames.success_rate(by=by, freq="W"), store.success_rate(by=by, freq="W"),
              ["period"] + ([by] if isinstance(by, str) else list(by)))
    _same(frames.duration_stats(by="task"), store.duration_stats(by="task"), ["task"])
    assert len(frames.flaky(window=20)) == 1 and len(frames.failure_groups()) == 2
    _same(frames.flaky(window=20), store.flaky(window=20), ["project", "task"])
    _same(frames.failure_groups(), store.failure_groups(), ["signature"])
    _same(frames.regressions("build"), store.regressions("build"), ["run_id"])
    assert frames.regressions("build")["run_id"].tolist() == ["run020"]
    _same(frames.critical_path("run003"), store.critical_path("run003"), ["task"])
    _same(frames.compare("run003", "run004"), store.compare("run003", "run004"), ["task"])
    assert frames.resolve("latest") == store.resolve("latest") == f"run{RUNS - 1:03d}"
    assert frames.resolve("run007") == "run007"
    logs = frames.logs("run003")          # no files, no fragments: the stored tail
    assert set(logs["source"]) == {"stderr tail"} and logs["text"].str.contains("refused").any()
    assert frames.disk_samples().empty and frames.grep("refused").shape[0] == RUNS // 4


def test_filters_and_surfaces_work_through_a_third_backend(pair):
    from ottolytics.analyze.stats import stats
    store, frames = pair
    since = T0 + 30 * 3600
    narrow_s, narrow_f = (x.with_filters(since=since, task=["test"], status=["failed"])
                          for x in (store, frames))
    _same(narrow_f.tasks(), narrow_s.tasks(), ["run_id", "attempt"])
    _same(narrow_f.runs(), narrow_s.runs(), ["run_id"])
    for key in ("overall", "top"):
        got, want = stats(frames)[key], stats(store)[key]
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    week = pd.Timestamp(T0, unit="s").strftime("%G-W%V")
    report = frames.weekly_report(week)
    assert len(report) == 4 and report.set_index("task").loc["test", "top_failure_count"] == 10
    _same(report, store.weekly_report(week), ["project", "task"])
    assert frames.sql("SELECT count(*) AS n FROM deps")["n"][0] == \
        store.sql("SELECT count(*) AS n FROM deps")["n"][0] == RUNS * 3 + 1


def test_the_sql_views_have_one_shape_whatever_the_source(pair, tmp_path):
    store, frames = pair
    store.to_parquet(tmp_path / "dataset")
    dataset = ottolytics.open(tmp_path / "dataset")
    columns = ["project", "task", "attempt", "status", "started_at", "started_s",
               "duration_s", "script_hash"]
    for h in (store, frames, dataset):
        attempts = h.sql("SELECT * FROM attempts")
        assert list(attempts.columns) == columns and len(attempts) == RUNS * 4 + 1
        assert h.sql("SELECT count(*) AS n FROM attempts WHERE status = 'failed'")["n"][0] == \
            RUNS // 4 + 1
    dataset.close()


def test_empty_relations_have_the_contract_types_whatever_the_source(pair, tmp_path):
    """A relation a source does not keep (disk samples, logs, log paths of a dataset
    or of a third backend) is empty with the same column types the store's are, not
    NULLs typed as integers."""
    store, frames = pair
    store.to_parquet(tmp_path / "dataset")
    dataset = ottolytics.open(tmp_path / "dataset")

    def types(h, name):
        return h._query(lambda r: "DESCRIBE " + getattr(r, name)())[
            ["column_name", "column_type"]].values.tolist()
    try:
        for name in ("disk_samples", "logs", "log_paths"):
            want = types(store, name)
            assert types(dataset, name) == types(frames, name) == want, name
        samples = dataset.disk_samples()
        assert samples.empty
        assert samples.dtypes.to_dict() == store.disk_samples().dtypes.to_dict()
        assert samples["measured_at"].dtype.kind == "M" and samples["runs"].dtype.kind == "i"
    finally:
        dataset.close()


# -- the engine's own layering ----------------------------------------------------------

def _imports(path):
    """The ottolytics modules *path* imports (at any depth of the file)."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("ottolytics.")}


def test_sources_sit_below_history_and_analyze_below_export():
    """Sources know nothing of History or the analytics (a new backend cannot
    reach into them), and nothing in analyze imports the layers above it; so
    history, parquet and report form no cycle any more."""
    from pathlib import Path
    root = Path(ottolytics.__file__).parent / "analyze"
    above = ("ottolytics.export", "ottolytics.cli", "ottolytics.mcp", "ottolytics.tools")
    engine = ("ottolytics.analyze.history", "ottolytics.analyze.analytics",
              "ottolytics.analyze.weekly", "ottolytics.analyze.dataset",
              "ottolytics.analyze.stats", "ottolytics.analyze.plots")
    wrong = []
    for path in sorted(root.rglob("*.py")):
        for module in _imports(path):
            if module.startswith(above) or ("sources" in path.parts and module.startswith(engine)):
                wrong.append(f"{path.relative_to(root.parent)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_every_frame_can_be_changed_in_place(tmp_path):
    """A frame's columns were read-only views of Arrow's buffers where a column
    had no nulls (durations, times): ``df.loc[i, "duration_s"] = 0`` raised
    "assignment destination is read-only" (pandas 3)."""
    import shutil
    import ottolytics
    sample = Path(__file__).resolve().parent.parent / "data" / "sample" / "ottolytics.db"
    shutil.copy(sample, tmp_path / "s.db")
    with ottolytics.open(tmp_path / "s.db") as h:
        frames = {"tasks": h.tasks(), "runs": h.runs(), "duration_stats": h.duration_stats(),
                  "success_rate": h.success_rate(), "transitions": h.transitions()}
    for name, df in frames.items():
        for column in df.columns:
            if pd.api.types.is_float_dtype(df[column]):
                df.loc[df.index[0], column] = -1.5
                assert df[column].iloc[0] == -1.5, (name, column)
            elif pd.api.types.is_datetime64_any_dtype(df[column]):
                df.loc[df.index[0], column] = pd.Timestamp(0, tz="UTC")
                assert df[column].iloc[0] == pd.Timestamp(0, tz="UTC"), (name, column)
