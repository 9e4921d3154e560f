"""``ottolytics exec``: run a command and record it as a task.

The command's stdout and stderr pass through to the terminal byte for byte
and are also appended, unbuffered, to ``stdout.log`` and ``stderr.log`` in the
task's directory, so ``tail -f`` follows them live. The exit code, the signal,
CPU times and peak RSS (from the child's rusage) and the last 4 KiB of stderr
are recorded. SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the child.
The shim exits with the child's code, or 128+N when signal N killed it;
trouble with recording never changes that.
"""

import os
import select
import shlex
import signal
import subprocess
import sys
import time
from os.path import basename, exists, join

from ottolytics.core.paths import (dir_size, runs_root, safe_component, sha256_hex,
                                   spool_dirs, store_home, task_path_to_stored, to_stored)
from ottolytics.record.recorder import STDERR_TAIL_BYTES, Recorder, tail_text

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# After the child exits, how long to keep draining pipes that a grandchild holds open.
DRAIN_GRACE_S = 0.5
CHUNK = 65536
START_WAIT_S = 0.25
END_WAIT_S = 1.0
RUN_ID_ENV = "OTTOLYTICS_RUN_ID"


def run_dir_for(uid, home=None) -> str:
    """Where a run's logs go; derived from the id alone so any process can find it."""
    return join(runs_root(home), uid)


def _make_task_dir(run_dir: str, task: str, db) -> str | None:
    """Create the task's log directory: ``tasks/<task>``, or ``<task>.N`` for a retry.

    Falls back to a spool directory when OTTO_HOME is not writable; None when
    nothing is, in which case output is only streamed.
    """
    def bases():
        yield run_dir
        for d in spool_dirs(db)[1:]:  # only computed when OTTO_HOME is not writable
            yield join(d, "logs", basename(run_dir))

    name = safe_component(task)
    for base in bases():
        try:
            os.makedirs(join(base, "tasks"), exist_ok=True)
        except OSError:
            continue
        for attempt in range(1, 1000):
            candidate = join(base, "tasks", name if attempt == 1 else f"{name}.{attempt}")
            try:
                os.mkdir(candidate)
                return candidate
            except FileExistsError:
                continue
            except OSError:
                break
    return None


def _in_terminal_foreground():
    """True when a terminal's keyboard signals already reach our process group."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


class _Output:
    """One of the child's streams: to the terminal and to its log file.

    When the log cannot take more (a full disk), what was written is kept, the
    log is not written again (a log with a hole would mislead), and
    :meth:`problem` says so for the warning and the task's record.
    """

    def __init__(self, terminal_fd, log_path, keep_tail):
        self.terminal_fd = terminal_fd
        self.log = None
        self.name = basename(log_path) if log_path else None
        self.error = None
        self.total = 0
        self.logged = 0
        if log_path is not None:
            try:
                self.log = open(log_path, "ab", buffering=0)
            except OSError as exc:
                self.log, self.error = None, exc
        self.keep_tail = keep_tail
        self.tail = bytearray()

    def write(self, data):
        try:
            os.write(self.terminal_fd, data)
        except OSError:
            pass  # the terminal went away; the log still gets everything
        self.total += len(data)
        if self.log is not None:
            view = memoryview(data)
            try:
                while view:  # a short write is what a filling disk gives first
                    n = self.log.write(view)
                    self.logged += n
                    view = view[n:]
            except OSError as exc:
                self.error = exc
                self._close_log()
        if self.keep_tail:
            self.tail += data
            if len(self.tail) > 2 * STDERR_TAIL_BYTES:
                del self.tail[:-STDERR_TAIL_BYTES]

    def _close_log(self):
        try:
            self.log.close()
        except OSError as exc:
            self.error = self.error or exc
        self.log = None

    def problem(self):
        """One phrase when the log lost output, else None."""
        if self.error is None or self.name is None:
            return None
        why = self.error.strerror or str(self.error)
        return (f"{self.name} is incomplete ({why}): kept {self.logged} of "
                f"{self.total} bytes")

    def close(self):
        if self.log is not None:
            self._close_log()


def _reap_adopted(command_pid):
    """Reap the processes the command left behind that ended: as a subreaper we
    inherit them, and they would stay zombies until we exit. Never the command."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == command_pid:
            return
        try:
            os.waitpid(info.si_pid, os.WNOHANG)
        except ChildProcessError:
            return


def _pump(proc, outputs):
    """Copy the child's pipes until they close; returns the child's (status, rusage)."""
    poller = select.poll()
    by_fd = {}
    for pipe, out in outputs:
        os.set_blocking(pipe.fileno(), False)
        poller.register(pipe.fileno(), select.POLLIN)
        by_fd[pipe.fileno()] = out
    result = None
    deadline = None
    while by_fd:
        timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
        for fd, _event in poller.poll(timeout * 1000):
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if data:
                by_fd[fd].write(data)
            else:
                poller.unregister(fd)
                del by_fd[fd]
        if result is None:
            if _SUBREAPER and _SUBREAPER[0]:
                _reap_adopted(proc.pid)
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                result = (status, rusage)
                deadline = time.monotonic() + DRAIN_GRACE_S
        elif time.monotonic() >= deadline:
            break  # a background grandchild still holds the pipes
    if result is None:
        _pid, status, rusage = os.wait4(proc.pid, 0)
        result = (status, rusage)
    proc.returncode = 0  # reaped here; keep Popen from waiting again
    return result


def store_waits():
    """(before, after): how long exec waits for a locked store before it spools.

    Before the command: ``$OTTOLYTICS_EXEC_WAIT`` (default 0.25 s), so a locked
    store never holds the command up. After it: up to 1 s (never more than the
    busy timeout), to land the whole run in the store when the lock was brief.
    """
    from ottolytics.store.connection import busy_timeout_s
    try:
        before = float(os.environ.get("OTTOLYTICS_EXEC_WAIT", START_WAIT_S))
    except ValueError:
        before = START_WAIT_S
    before = max(0.0, before)
    return before, max(before, min(END_WAIT_S, busy_timeout_s()))


# -- starting the command so that its rusage is its own ----------------------
#
# Linux carries the high-water RSS of a process's memory before execve into
# its ru_maxrss: a command forked (or vforked, or posix_spawned) from this
# Python process reports ~10 MB of Python for ``true``. So the command is
# forked by a small process instead: ``sh`` runs a subshell that waits on a
# pipe; we (a child subreaper) kill that sh, adopt the subshell, open the
# pipe, and the subshell execs the command. The command is then our direct
# child, in our process group, with our stdin, and wait4 gives its own
# rusage. Where any step is unavailable, the command is spawned directly.

PR_SET_CHILD_SUBREAPER = 36
_SUBREAPER = []


def _become_subreaper():
    if not _SUBREAPER:
        ok = False
        if sys.platform.startswith("linux") and os.access("/bin/sh", os.X_OK):
            try:
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                ok = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except Exception:
                ok = False
        _SUBREAPER.append(ok)
    return _SUBREAPER[0]


def _stop_subreaping():
    """Leave the process as we found it (exec_command may run inside a longer one)."""
    if _SUBREAPER and _SUBREAPER[0]:
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        except Exception:
            pass
    _SUBREAPER.clear()


def _resolve(argv0, env):
    """Raise what execvp would for *argv0* (FileNotFoundError, PermissionError)."""
    if "/" in argv0:
        candidates = [argv0]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [join(d or ".", argv0) for d in path.split(os.pathsep)]
    denied = None
    for c in candidates:
        if os.path.isfile(c):
            if os.access(c, os.X_OK):
                return c
            denied = c
        elif "/" in argv0 and os.path.isdir(c):
            denied = c
    if denied is not None:
        raise PermissionError(13, "Permission denied", argv0)
    raise FileNotFoundError(2, "No such file or directory", argv0)


class _Adopted:
    """The command's process when we adopted it (what _pump needs of a Popen)."""

    def __init__(self, pid, stdout, stderr):
        self.pid, self.stdout, self.stderr = pid, stdout, stderr
        self.returncode = None


def _children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None


def _parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _spawn(argv, env):
    """Start *argv* with stdout and stderr piped; returns a Popen-like object."""
    _resolve(argv[0], env)
    if not _become_subreaper():
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    gate_r, gate_w = os.pipe()
    script = '( read _ <&3 || exit 125; exec 3<&-; exec "$@" ); exit 125'
    try:
        # fd 3 of the sh is the gate (our own fd 3 may be anything, e.g. the store).
        sh = subprocess.Popen(["/bin/sh", "-c", script, "sh", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, pass_fds=(3,),
                              preexec_fn=lambda: os.dup2(gate_r, 3))
    except OSError:
        os.close(gate_w)
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(gate_r)
    cmd_pid = None
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        kids = _children_of(sh.pid)
        if kids is None or sh.poll() is not None:
            break
        if kids:
            cmd_pid = kids[0]
            break
        time.sleep(0.0002)
    try:
        os.kill(sh.pid, signal.SIGKILL)
    except OSError:
        pass
    sh.wait()
    if cmd_pid is None or _parent_of(cmd_pid) != os.getpid():
        if cmd_pid is not None:  # not ours: it has not started the command; stop it
            try:
                os.kill(cmd_pid, signal.SIGKILL)
            except OSError:
                pass
        os.close(gate_w)
        sh.stdout.close()
        sh.stderr.close()
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    os.write(gate_w, b"go\n")
    os.close(gate_w)
    return _Adopted(cmd_pid, sh.stdout, sh.stderr)


def exec_command(argv, *, db=None, project=None, task=None, run=None, home=None) -> int:
    """Run *argv* as one recorded task; return the exit code the shim should exit with.

    Without *run* (or ``$OTTOLYTICS_RUN_ID``) the command is a run of its own.
    """
    if not argv:
        print("ottolytics exec: no command given; usage: ottolytics exec [options] -- CMD ...",
              file=sys.stderr)
        return 2
    home = store_home(db, home)
    received = []  # every signal, in order
    pending = []  # signals that came while there was no child to forward them to
    child = None
    forward_keyboard = not _in_terminal_foreground()

    def on_signal(signum, frame):
        received.append(signum)
        if child is None:
            pending.append(signum)
            return
        if child.returncode is None:
            if signum in (signal.SIGINT, signal.SIGQUIT) and not forward_keyboard:
                return  # the terminal already sent it to the child's process group
            try:
                os.kill(child.pid, signum)
            except OSError:
                pass

    saved = {s: signal.signal(s, on_signal) for s in FORWARDED}
    try:
        wait_before, wait_after = store_waits()
        began = time.time()
        try:
            rec = Recorder(db, wait=wait_before, quiet_spool=True)
            task_name = task or os.path.basename(argv[0]) or "command"
            handle, owned, task_dir, th = _begin(rec, argv, project, task_name, run, home,
                                                 began)
        except Exception as exc:  # never let recording stop the command
            print(f"ottolytics: warning: not recording this command: {exc}", file=sys.stderr)
            rec = handle = th = task_dir = None
            owned = False
        if rec is not None:
            rec.retry_store(wait_after)
        if pending:  # a signal came while we waited for the store: do not start
            sig = pending[0]
            _end(rec, handle, owned, th, None, None,
                 f"received {signal.Signals(sig).name} before the command started", b"",
                 None, home, began)
            return 128 + sig
        out = _Output(1, join(task_dir, "stdout.log") if task_dir else None, keep_tail=False)
        err = _Output(2, join(task_dir, "stderr.log") if task_dir else None, keep_tail=True)
        env = dict(os.environ)
        if handle is not None:
            env[RUN_ID_ENV] = handle.uid
        spawned = time.monotonic()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            child = _spawn(argv, env)
        except OSError as exc:
            child = False
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            message = f"ottolytics exec: {argv[0]}: {exc.strerror or exc}\n".encode()
            err.write(message)
            out.close()
            err.close()
            _end(rec, handle, owned, th, code, None, None, bytes(err.tail), None, home, began)
            return code
        for signum in pending:  # came during the spawn itself: the child gets them
            on_signal(signum, None)

        status, rusage = _pump(child, [(child.stdout, out), (child.stderr, err)])
        elapsed = time.monotonic() - spawned
        out.close()
        err.close()
        child.stdout.close()
        child.stderr.close()
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            exit_code, code = None, 128 + sig
        else:
            sig = None
            exit_code = code = os.waitstatus_to_exitcode(status)
        interrupted = bool(received) and (sig is not None or code != 0)
        reason = f"received {signal.Signals(received[0]).name}" if interrupted else None
        lost = [p for p in (out.problem(), err.problem()) if p]
        for problem in lost:
            print(f"ottolytics: warning: {problem}; the terminal got all of it", file=sys.stderr)
        # The command's own duration, whatever the store's locks cost before it.
        _end(rec, handle, owned, th, exit_code, sig, reason, bytes(err.tail), rusage, home,
             began + elapsed, note="; ".join(lost) or None)
        return code
    finally:
        _stop_subreaping()
        for s, h in saved.items():
            signal.signal(s, h)


def _begin(rec, argv, project, task_name, run, home, at):
    """Start (or join) the run and start the task; returns (run, owned, task_dir, task)."""
    run_uid = run or os.environ.get(RUN_ID_ENV) or None
    if run_uid and rec.run_exists(run_uid) is False:
        print(f"ottolytics: warning: --run {run_uid}: no such run in {rec.db}; recording "
              "this command as a run of its own", file=sys.stderr)
        run_uid = None
    if run_uid:
        handle, owned = rec.attach(run_uid), False
    else:
        handle, owned = rec.run(project, args=list(argv)), True
    run_dir = run_dir_for(handle.uid, home)
    if owned:
        handle.run_dir = to_stored(run_dir, home)
    task_dir = _make_task_dir(run_dir, task_name, rec.db)
    command_line = shlex.join(argv)
    paths = {"script_hash": sha256_hex(command_line)[:8]}
    if task_dir is not None:
        script = join(task_dir, "command.sh")
        try:
            with open(script, "wb") as f:  # the exact bytes, even when not UTF-8
                f.write(os.fsencode(command_line) + b"\n")
            paths["script_path"] = task_path_to_stored(script, run_dir, home)
        except OSError:
            pass
        paths["stdout_path"] = task_path_to_stored(join(task_dir, "stdout.log"), run_dir, home)
        paths["stderr_path"] = task_path_to_stored(join(task_dir, "stderr.log"), run_dir, home)
    th = handle.task(task_name, **paths)
    with rec.batch():  # one transaction for the run's start and the task's
        if owned:
            handle.start(at=at)
        th.start(at=at)
    return handle, owned, task_dir, th


def _end(rec, handle, owned, th, exit_code, sig, reason, tail, rusage, home, at, note=None):
    """Record the task's end (and the run's, when the shim owns it); never raises."""
    if th is None:
        return
    try:
        resources = {}
        if rusage is not None:
            resources = {"cpu_user_s": rusage.ru_utime, "cpu_system_s": rusage.ru_stime,
                         "peak_rss_bytes": rusage.ru_maxrss
                         * (1 if sys.platform == "darwin" else 1024)}
        size = None
        if owned:
            run_dir = run_dir_for(handle.uid, home)
            size = dir_size(run_dir) if exists(run_dir) else None
        with rec.batch():  # one transaction for the task's end and the run's
            why = "; ".join(r for r in (reason, note) if r) or None
            th.finish(exit_code, signal=sig, status="interrupted" if reason else None,
                      reason=why, stderr_tail=tail_text(tail), at=at, **resources)
            if owned:
                handle.finish("interrupted" if reason else None, size_bytes=size, at=at)
        rec.close()
    except Exception as exc:
        print(f"ottolytics: warning: could not record the end of {th.name}: {exc}",
              file=sys.stderr)

