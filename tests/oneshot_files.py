"""Write oneshot sessions the way oneshot itself writes them (jjurach/oneshot e6772dd).

What oneshot writes, and where (our own writer; facts read from oneshot's source):

* the session is ``<sessions>/oneshot_<local %Y-%m-%d_%H-%M-%S>.json`` (oneshot.py
  107-116; ``<sessions>`` is ``~/.oneshot/sessions``, session_utils.py 13, or
  ``--logs-dir``). Every save rewrites the whole file through a temporary file and
  a rename (context.py 110-144): ``json.dump(..., indent=2)``, no final newline,
  mode 0600 from the temporary file;
* ``created_at``/``updated_at`` are naive ISO strings of ``datetime.utcnow()``;
  each save sets ``updated_at``;
* a history entry is ``{"state", "ts"}`` with ``ts = datetime.utcnow().timestamp()``
  (context.py 164-178): the UTC wall clock read as local time, so ``ts`` is the true
  time minus the local UTC offset. No pid, no reason (engine.py 573-578);
* ``metadata.start_time`` is ``datetime.now().isoformat()`` (local, naive),
  ``metadata.cwd`` the process's working directory (oneshot.py 419-433);
* the activity log is ``<id without "oneshot_">-oneshot-log.json`` relative to
  that working directory, its path kept in ``metadata.session_log_path``
  (engine.py 453-462); one JSON line per item, appended and flushed:
  ``{"timestamp": time.time(), "data": ..., "executor": "worker"|"auditor",
  "is_heartbeat": false}`` (pipeline.py 164-170, 299-302).

Times given to this writer are true unix times; the process's TZ gives the local
clock, as it does for oneshot.
"""

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

MODELS = {"claude": "claude-3-5-haiku-20241022", "direct": "llama-pro:latest"}
WORKER_OUTCOME = {"success": "AUDIT_PENDING", "crash": "RECOVERY_PENDING",
                  "inactivity": "RECOVERY_PENDING", "interrupt": "INTERRUPTED"}
AUDITOR_VERDICT = {"done": "COMPLETED", "retry": "REITERATION_PENDING",
                   "impossible": "REJECTED", "crash": "FAILED", "inactivity": "FAILED",
                   "interrupt": "INTERRUPTED"}


def utc_wall(t):
    """datetime.utcnow() as it reads at true time *t*: naive UTC wall clock."""
    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)


class Session:
    """One oneshot run, written save by save as oneshot's engine writes it."""

    def __init__(self, home, cwd, at, task="write the docs", executor="cline",
                 max_iterations=3, initial_timeout=300, max_timeout=3600,
                 activity_interval=30, session_log=None, sessions_dir=None, started=None):
        self.current = "CREATED"  # the engine's state machine, fresh in every process
        self.dir = Path(sessions_dir) if sessions_dir else Path(home) / ".oneshot" / "sessions"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cwd = Path(cwd)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.max_iterations = max_iterations
        self.id = "oneshot_" + datetime.fromtimestamp(at).strftime("%Y-%m-%d_%H-%M-%S")
        self.path = self.dir / f"{self.id}.json"
        stamp = utc_wall(at).isoformat()
        self.data = {"version": 1, "oneshot_id": None, "state": "CREATED",
                     "iteration_count": 0, "max_iterations": 5, "created_at": stamp,
                     "updated_at": stamp, "history": [], "worker_result": None,
                     "auditor_result": None, "metadata": {}, "variables": {}}
        self.data["oneshot_id"] = self.id
        self.data["variables"]["task"] = task
        self.save(at)
        self.save(at)
        self.options = dict(executor=executor, initial_timeout=initial_timeout,
                            max_timeout=max_timeout, activity_interval=activity_interval)
        self._start(at + 0.002 if started is None else started, session_log)

    def _start(self, at, session_log):
        """main(): the metadata of this process, then the engine."""
        model = MODELS.get(self.options["executor"])
        for key, value in (("provider_worker", model), ("provider_auditor", model),
                           ("executor_type", self.options["executor"]),
                           ("start_time", datetime.fromtimestamp(at).isoformat()),
                           ("cwd", str(self.cwd)), ("max_iterations", self.max_iterations),
                           ("initial_timeout", self.options["initial_timeout"]),
                           ("max_timeout", self.options["max_timeout"]),
                           ("activity_interval", self.options["activity_interval"])):
            self.set_metadata(key, value, at)
        if session_log:
            self.set_metadata("session_log_path", session_log, at)
        self.save(at)

    def resume(self, at, task=None, session_log=None):
        """``oneshot --resume``: the same file, a new process whose engine starts
        from CREATED whatever the file's state."""
        self.current = "CREATED"
        if task:
            self.data["variables"]["task"] = task
            self.save(at)
        self._start(at, session_log)

    # -- what ExecutionContext does ------------------------------------------
    def save(self, at):
        self.data["updated_at"] = utc_wall(at).isoformat()
        with tempfile.NamedTemporaryFile(mode="w", dir=self.dir, delete=False,
                                         suffix=".tmp", prefix="oneshot_") as tf:
            json.dump(self.data, tf, indent=2)
        os.replace(tf.name, self.path)

    def set_metadata(self, key, value, at):
        self.data["metadata"][key] = value
        self.save(at)

    def set_state(self, state, at):
        self.data["state"] = self.current = state
        self.data["history"].append({"state": state, "ts": utc_wall(at).timestamp()})
        self.save(at)
        self.save(at)  # the engine's _save_state saves once more

    # -- the activity log ----------------------------------------------------
    @property
    def log_name(self):
        given = self.data["metadata"].get("session_log_path")
        if given:
            return given
        oneshot_id = self.data["oneshot_id"]
        if not oneshot_id:
            return "oneshot-log.json"
        if oneshot_id.startswith("oneshot_"):
            oneshot_id = oneshot_id.replace("oneshot_", "")
        return f"{oneshot_id}-oneshot-log.json"

    @property
    def log_path(self):
        return self.cwd / self.log_name

    def log(self, role, lines):
        markdown = str(self.log_path).endswith(".md")  # pipeline.py 282-297
        with open(self.log_path, "a") as f:
            for at, data in lines:
                if markdown:
                    f.write(f"`{datetime.fromtimestamp(at).strftime('%H:%M:%S')}` "
                            f"**[{role}]** {str(data).strip()}\n\n")
                else:
                    f.write(json.dumps({"timestamp": at, "data": data, "executor": role,
                                        "is_heartbeat": False}, default=str) + "\n")

    def _pump(self, role, at, lines):
        self.set_metadata("session_log_path", self.log_name, at)
        self.save(at)
        self.log(role, lines)

    # -- what the engine does ------------------------------------------------
    def worker(self, start, lines=(), end=None, outcome="success"):
        """A worker iteration; *end* None leaves it running (or its process killed)."""
        if self.current == "REITERATION_PENDING":
            count = self.data["iteration_count"] + 1
            if count >= self.max_iterations:
                self.set_state("FAILED", start)
                return
            self.data["iteration_count"] = count
            self.save(start)
            self.data["is_reiteration"] = True
            self.save(start)
        self.set_state("WORKER_EXECUTING", start)
        self._pump("worker", start, lines)
        if end is not None:
            self.set_state(WORKER_OUTCOME[outcome], end)

    def auditor(self, start, lines=(), end=None, verdict="done"):
        self.set_state("AUDITOR_EXECUTING", start)
        self._pump("auditor", start, lines)
        if end is not None:
            self.set_state(AUDITOR_VERDICT[verdict], end)

    def recover(self, at, verdict="dead"):
        """RECOVERY_PENDING resolved: dead -> FAILED, success -> AUDIT_PENDING,
        partial -> REITERATION_PENDING."""
        self.set_state({"dead": "FAILED", "success": "AUDIT_PENDING",
                        "partial": "REITERATION_PENDING"}[verdict], at)

    def interrupt(self, at):
        """Ctrl-C between two actions."""
        self.set_state("INTERRUPTED", at)
