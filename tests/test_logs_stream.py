"""ottolytics logs streams a log file: memory stays bounded whatever its size."""

import json
import subprocess
import sys

from conftest import run_cli, run_cli_on_a_tty

SIZE = 24 * 2 ** 20      # 24 MiB of log
LINE = b"x" * 63 + b"\n"


def _big_run(home):
    assert run_cli("exec", "--task", "t", "--", "true").returncode == 0
    log = next(home.glob("ottolytics/runs/*/tasks/t/stdout.log"))
    with open(log, "wb") as f:
        block = LINE * (2 ** 20 // len(LINE))
        for i in range(SIZE // len(block)):
            f.write(block)
        f.write(b"last line \xff\n")
    return log


def _peak_rss_mb(*argv):
    """Run the CLI in a child, output to /dev/null: (exit code, its peak RSS in MiB,
    the end of its stderr)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-m', 'ottolytics', *sys.argv[1:]],"
            " stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "print(p.returncode, peak, p.stderr.decode()[-300:].replace(chr(10), ' '))\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         timeout=600)
    rc, peak, _err = out.stdout.split(" ", 2)
    return int(rc), float(peak), _err


def test_logs_of_a_huge_file_stream_in_bounded_memory(home):
    _big_run(home)
    base_rc, base, _ = _peak_rss_mb("stats")   # the interpreter with pandas and DuckDB
    assert base_rc == 0
    for argv in (["logs", "latest", "t"], ["logs", "latest", "--json"]):
        rc, peak, err = _peak_rss_mb(*argv)
        assert rc == 0, err
        # read whole, the file took ~13 times its size (786 MiB for 60 MiB)
        assert peak < base + 100, (argv, peak, base)


def test_streamed_output_is_the_same_text(home):
    assert run_cli("exec", "--task", "t", "--", "sh", "-c",
                   "printf 'a\\nb\\r\\nc'; printf 'err\\n' >&2").returncode == 0
    plain = run_cli("logs", "latest", "t")
    assert plain.returncode == 0
    assert plain.stdout.decode().splitlines() == ["a", "b", "c", "err"]
    doc = json.loads(run_cli("logs", "latest", "t", "--json").stdout)
    assert [(r["stream"], r["seq"], r["text"], r["source"]) for r in doc["lines"]] == [
        ("stdout", 1, "a", "file"), ("stdout", 2, "b", "file"), ("stdout", 3, "c", "file"),
        ("stderr", 1, "err", "file")]
    import ottolytics
    from conftest import ROOT  # noqa: F401
    h = ottolytics.open(home / "ottolytics.db")
    lib = h.logs("latest", "t")
    assert lib["text"].tolist() == ["a", "b", "c", "err"]
    assert doc["refused"] == []


def test_follow_on_a_terminal_keeps_its_newlines_and_escapes_the_rest(home):
    """logs --follow writes the file as it grows; on a terminal, control characters
    are escaped but line ends are line ends (it wrote a literal \\n before)."""
    assert run_cli("exec", "--task", "t", "--", "sh", "-c",
                   "printf 'one\\ntwo\\033]0;x\\007\\n'").returncode == 0
    proc, out = run_cli_on_a_tty("logs", "latest", "t", "--stream", "stdout", "--follow")
    assert proc.returncode == 0, proc.stderr
    assert out.replace("\r\n", "\n") == "one\ntwo\\x1b]0;x\\x07\n"


def test_iter_run_logs_says_when_the_run_has_no_such_task(home):
    """The rule behind `logs RUN TASK`'s error, in the library: a task that wrote
    nothing streams no lines; a task the run does not have is TaskNotFound."""
    import pytest
    import ottolytics
    from ottolytics.analyze.analytics import iter_run_logs
    from ottolytics.manage.runinfo import TaskNotFound
    assert run_cli("exec", "--task", "t", "--", "true").returncode == 0
    with ottolytics.open(home / "ottolytics.db") as h:
        uid, rows, refused = iter_run_logs(h, "latest", "t")
        assert list(rows) == [] and refused == []
        with pytest.raises(TaskNotFound, match=f"run {uid} has no task 'nope'; its tasks are t$"):
            iter_run_logs(h, "latest", "nope")
