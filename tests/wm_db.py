"""Writes an executions.db the way workflow-manager (molaco/workflow-manager a583ace) does.

Our own code, written from what its sources do:

* schema (``database.rs`` ``initialize_schema`` and ``migrate_to_v2``): the four tables
  with their types, NOT NULL, defaults, foreign keys and indexes, schema_version 1
  then 2; ``journal_mode=WAL`` and ``foreign_keys=ON`` on every connection;
* times: ``chrono::Local::now().to_rfc3339()``: local time, the fraction printed with
  0, 3, 6 or 9 digits as needed, and a ``+HH:MM`` offset (never ``Z``);
* one execution (``runtime.rs`` ``execute_workflow``): the row is inserted as
  ``Running`` with start, created and updated times read from three clock calls,
  then its params; two parsers (stdout, stderr) push each line into one shared
  buffer whose length is its ``sequence`` (from 0), and flush their pending lines
  when 50 are pending, or when a line arrives more than 5 s after their last flush,
  and at end of stream; each flushed row's ``timestamp`` is the flush time;
* the exit (``wait_for_process_exit``): status Completed or Failed, end time and
  exit code (NULL when killed by a signal), updated_at = now; it races the parsers'
  last flush;
* a manager restart (``restore_from_database``): each of the 100 newest executions
  still ``Running`` becomes ``Failed`` with end = start and exit code NULL.

Workflows print structured events on stderr as ``__WF_EVENT__:<json>`` (serde, tag
``type`` in snake_case, fields in declaration order); any other line is kept as
``RawOutput``; a prefixed line that does not parse is dropped.
"""

import json
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workflow_name TEXT,
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    exit_code INTEGER,
    binary_path TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_executions_workflow_id ON executions(workflow_id);
CREATE INDEX IF NOT EXISTS idx_executions_status ON executions(status);
CREATE INDEX IF NOT EXISTS idx_executions_start_time ON executions(start_time DESC);
CREATE TABLE IF NOT EXISTS execution_params (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    param_name TEXT NOT NULL,
    param_value TEXT NOT NULL,
    FOREIGN KEY(execution_id) REFERENCES executions(id) ON DELETE CASCADE,
    UNIQUE(execution_id, param_name)
);
CREATE INDEX IF NOT EXISTS idx_params_execution_id ON execution_params(execution_id);
CREATE TABLE IF NOT EXISTS execution_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    log_type TEXT NOT NULL,
    log_data TEXT NOT NULL,
    FOREIGN KEY(execution_id) REFERENCES executions(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_logs_execution_id ON execution_logs(execution_id, sequence);
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT OR IGNORE INTO schema_version (version) VALUES (1);
"""
MIGRATE_V2 = """
CREATE TABLE IF NOT EXISTS chat_input_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_chat_history_timestamp ON chat_input_history(timestamp DESC);
UPDATE schema_version SET version = 2;
"""
TZ = timezone(timedelta(hours=1))  # the manager's local zone in these fixtures
BATCH = 50
FLUSH_AFTER_S = 5.0
TICK_NS = 1_337  # the time one clock read or one row insert takes


def rfc3339(unix_ns, tz=TZ):
    """``DateTime<Local>::to_rfc3339()`` of *unix_ns*: 0, 3, 6 or 9 fraction digits."""
    secs, ns = divmod(int(unix_ns), 1_000_000_000)
    text = datetime.fromtimestamp(secs, tz).strftime("%Y-%m-%dT%H:%M:%S")
    if ns % 1_000_000_000 == 0:
        frac = ""
    elif ns % 1_000_000 == 0:
        frac = f".{ns // 1_000_000:03d}"
    elif ns % 1_000 == 0:
        frac = f".{ns // 1_000:06d}"
    else:
        frac = f".{ns:09d}"
    offset = datetime.fromtimestamp(secs, tz).strftime("%z")
    return f"{text}{frac}{offset[:3]}:{offset[3:]}"


def ns(unix_seconds):
    return int(round(unix_seconds * 1_000_000_000))


# The events of workflow_manager_sdk::WorkflowLog, fields in declaration order.
def phase_started(phase, name, total_phases):
    return {"type": "phase_started", "phase": phase, "name": name, "total_phases": total_phases}


def phase_completed(phase, name):
    return {"type": "phase_completed", "phase": phase, "name": name}


def phase_failed(phase, name, error):
    return {"type": "phase_failed", "phase": phase, "name": name, "error": error}


def task_started(phase, task_id, description, total_tasks=None):
    return {"type": "task_started", "phase": phase, "task_id": task_id,
            "description": description, "total_tasks": total_tasks}


def task_progress(task_id, message):
    return {"type": "task_progress", "task_id": task_id, "message": message}


def task_completed(task_id, result=None):
    return {"type": "task_completed", "task_id": task_id, "result": result}


def task_failed(task_id, error):
    return {"type": "task_failed", "task_id": task_id, "error": error}


def agent_message(task_id, agent_name, message):
    return {"type": "agent_message", "task_id": task_id, "agent_name": agent_name,
            "message": message}


def state_file_created(phase, file_path, description):
    return {"type": "state_file_created", "phase": phase, "file_path": file_path,
            "description": description}


LOG_TYPES = {"phase_started": "PhaseStarted", "phase_completed": "PhaseCompleted",
             "phase_failed": "PhaseFailed", "task_started": "TaskStarted",
             "task_progress": "TaskProgress", "task_completed": "TaskCompleted",
             "task_failed": "TaskFailed", "agent_started": "AgentStarted",
             "agent_message": "AgentMessage", "agent_completed": "AgentCompleted",
             "agent_failed": "AgentFailed", "state_file_created": "StateFileCreated",
             "raw_output": "RawOutput"}


def serde_json(log):
    return json.dumps(log, separators=(",", ":"), ensure_ascii=False)


def connect(path):
    """``Database::new``: a connection in WAL mode with foreign keys on."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def create(path):
    """``Database::new`` then ``initialize_schema``, as the manager does at every start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    conn.executescript(SCHEMA)
    version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    if version < 2:
        conn.executescript(MIGRATE_V2)
    conn.close()
    return path


class Execution:
    """One workflow run under a manager: call :meth:`line` as the workflow prints,
    then :meth:`exit` and :meth:`close` in the order the race went."""

    def __init__(self, path, workflow_id, name, binary_path, params, at):
        self.path = path
        self.id = str(uuid.uuid4())
        self.clock = ns(at)
        conn = connect(path)
        start, created, updated = self.now(), self.now(), self.now()
        conn.execute(
            "INSERT INTO executions (id, workflow_id, workflow_name, status, start_time, "
            "end_time, exit_code, binary_path, created_at, updated_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            (self.id, workflow_id, name, "Running", start, None, None, binary_path,
             created, updated))
        conn.execute("BEGIN")
        for key, value in params.items():
            conn.execute("INSERT INTO execution_params (execution_id, param_name, param_value) "
                         "VALUES (?1, ?2, ?3)", (self.id, key, value))
        conn.execute("COMMIT")
        conn.close()
        self.start_time = start
        self.buffer = 0  # the shared logs_buffer's length
        parser_start = ns(at)
        self.pending = {"stdout": [], "stderr": []}
        self.last_flush = {"stdout": parser_start, "stderr": parser_start}
        self.open = {"stdout": True, "stderr": True}

    def now(self):
        self.clock += TICK_NS
        return rfc3339(self.clock)

    def line(self, at, stream, text):
        """The workflow prints *text* (a str, or an event dict sent the SDK's way on
        stderr) on *stream* at unix time *at*."""
        assert self.open[stream]
        self.clock = max(self.clock, ns(at))
        if isinstance(text, dict):
            assert stream == "stderr", "events travel on stderr"
            text = "__WF_EVENT__:" + serde_json(text)
        if stream == "stderr" and text.startswith("__WF_EVENT__:"):
            try:
                log = json.loads(text[len("__WF_EVENT__:"):])
            except ValueError:
                return  # dropped, as serde's .ok() drops it
        else:
            log = {"type": "raw_output", "stream": stream, "line": text}
        sequence, self.buffer = self.buffer, self.buffer + 1
        self.pending[stream].append((sequence, log))
        if len(self.pending[stream]) >= BATCH or \
                self.clock - self.last_flush[stream] > ns(FLUSH_AFTER_S):
            self._flush(stream)
            self.last_flush[stream] = self.clock

    def _flush(self, stream):
        conn = connect(self.path)
        conn.execute("BEGIN")
        for sequence, log in self.pending[stream]:
            conn.execute(
                "INSERT INTO execution_logs (execution_id, sequence, timestamp, log_type, "
                "log_data) VALUES (?1, ?2, ?3, ?4, ?5)",
                (self.id, sequence, self.now(), LOG_TYPES[log["type"]], serde_json(log)))
        conn.execute("COMMIT")
        conn.close()
        self.pending[stream] = []

    def close(self, stream, at):
        """End of *stream* at *at*: the parser flushes what is pending."""
        self.clock = max(self.clock, ns(at))
        if self.pending[stream]:
            self._flush(stream)
        self.open[stream] = False

    def exit(self, at, code):
        """The process exits at *at* with *code* (None: killed by a signal)."""
        self.clock = max(self.clock, ns(at))
        status = "Completed" if code == 0 else "Failed"
        end = self.now()
        update_execution(self.path, self.id, status, end, code, self.now())

    def finish(self, at, code, streams_close_first=True):
        """Exit and end of both streams, in either order of the race."""
        if streams_close_first:
            self.close("stdout", at)
            self.close("stderr", at)
            self.exit(at, code)
        else:
            self.exit(at, code)
            self.close("stdout", at)
            self.close("stderr", at)


def update_execution(path, exec_id, status, end_time, exit_code, updated_at):
    conn = connect(path)
    conn.execute("UPDATE executions SET status = ?1, end_time = ?2, exit_code = ?3, "
                 "updated_at = ?4 WHERE id = ?5",
                 (status, end_time, exit_code, updated_at, exec_id))
    conn.close()


def restart(path, at):
    """A manager starting at *at*: schema again, then the 100 newest executions by
    start_time; each still Running becomes Failed with end = start, exit code NULL."""
    create(path)
    conn = connect(path)
    rows = conn.execute("SELECT id, status, start_time FROM executions "
                        "ORDER BY start_time DESC LIMIT ?1 OFFSET ?2", (100, 0)).fetchall()
    conn.close()
    clock = ns(at)
    for exec_id, status, start in rows:
        if status == "Running":
            clock += TICK_NS
            update_execution(path, exec_id, "Failed", start, None, rfc3339(clock))
