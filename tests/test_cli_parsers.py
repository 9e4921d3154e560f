"""The fast parser of the quick commands agrees with argparse.

``exec``, ``history``, ``list`` and ``info`` are parsed without argparse
(cli/main.py's ``_fast_exec`` and ``_fast_quick``) because importing argparse is a
large part of their start-up budget. The fast parser may decline a vector (it
returns None and argparse parses it), but whatever it accepts must be what
argparse gives: the same values, or argparse must not refuse it. Many vectors per
command are generated: every option, ``--opt=value``, values that look like
options, ``--``, repeated options, missing values, unknown options, abbreviations.
"""

import contextlib
import io
import itertools
import random

import pytest

from ottolytics.cli import main as cli_main

# Values an option may be given: plain, empty, option-like, negative numbers, "--".
VALUES = ["x", "", "5", "-5", "-1.5", "-x", "--x", "-3d", "--json", "-n", "--", "-",
          "a=b", "with space", "-with space", "0", "1_000"]

QUICK = {
    "history": {"options": ["-n", "--status", "--project", "--since", "--db"],
                "flags": ["--json", "--jsonl", "--plain"], "positionals": 1},
    "list": {"options": ["--limit", "--project", "--db"],
             "flags": ["--json", "--jsonl", "--plain"], "positionals": 0},
    "info": {"options": ["--db"], "flags": ["--json", "--jsonl", "--plain"],
             "positionals": 1},
}
EXEC_OPTIONS = ["--db", "--project", "--task", "--run"]
ODD = ["--bogus", "-h", "--help", "--js", "--proj", "-n5", "--json=1", "TASK", "extra",
       "--", "-", "-5", "--db", "--limit=3", "--status=", "-n=7"]


def _argparse(argv):
    """(namespace as a dict, None) or (None, exit code) from the full parser."""
    parser = cli_main.build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(argv)
    except SystemExit as exc:
        return None, exc.code
    values = dict(vars(ns))
    values.setdefault("db", None)
    return values, None


def _fast(argv):
    """(command, values) from the fast parsers, or None when both decline."""
    got = cli_main._fast_exec(argv)
    if got is not None:
        return "exec", dict(vars(got))
    got = cli_main._fast_quick(argv)
    if got is not None:
        command, args = got
        return command, dict(vars(args))
    return None


def _compare(argv):
    """None when the parsers agree on *argv*, else what differs."""
    fast = _fast(argv)
    if fast is None:
        return None  # argparse parses it: nothing to agree on
    command, values = fast
    full, code = _argparse(argv)
    if full is None:
        return f"fast parser accepted {argv!r} as {values!r}; argparse refused (exit {code})"
    if command == "exec":  # what cmd_exec runs: argparse keeps a leading "--"
        rest = list(full["command"])
        full["command"] = rest[1:] if rest[:1] == ["--"] else rest
    else:
        assert full["command"] == command
        full.pop("command")
    full.pop("func", None)
    if full != values:
        return f"{argv!r}: fast {values!r} != argparse {full!r}"
    return None


def _quick_vectors(name, spec):
    singles = []
    for opt in spec["options"]:
        for v in VALUES:
            singles.append([opt, v])
            singles.append([f"{opt}={v}"])
        singles.append([opt])  # missing value
    singles += [[f] for f in spec["flags"]] + [[f + "=1"] for f in spec["flags"]]
    singles += [[o] for o in ODD]
    positionals = [[], ["RUN"], ["-5"], [""], ["a", "b"]]
    vectors = []
    for pos in positionals:
        for one in singles:
            vectors.append([name, *pos, *one])
            vectors.append([name, *one, *pos])
    rng = random.Random(15)
    for _ in range(3000):
        parts = [rng.choice(singles) for _ in range(rng.randint(2, 4))]
        pos = rng.choice(positionals)
        at = rng.randint(0, len(parts))
        parts[at:at] = [pos]
        vectors.append([name, *itertools.chain.from_iterable(parts)])
    prefixes = [[], ["--db", "top.db"], ["--db=top.db"], ["--db"], ["--dbx", "y"]]
    return [pre + v for pre in prefixes for v in vectors[::len(prefixes)] or vectors] + vectors


def _exec_vectors():
    singles = []
    for opt in EXEC_OPTIONS:
        for v in VALUES:
            singles += [[opt, v], [f"{opt}={v}"]]
        singles.append([opt])
    singles += [[o] for o in ODD] + [["exec"]]
    commands = [["--", "echo", "hi"], ["--"], ["--", "--", "x"], ["--", "-n", "5"], ["echo"],
                []]
    vectors = []
    for cmd in commands:
        for one in singles:
            vectors.append(["exec", *one, *cmd])
            vectors.append(["--db", "top.db", "exec", *one, *cmd])
            vectors.append([*one, "exec", *cmd])
    rng = random.Random(16)
    for _ in range(3000):
        parts = [rng.choice(singles) for _ in range(rng.randint(1, 4))]
        vectors.append(["exec", *itertools.chain.from_iterable(parts), *rng.choice(commands)])
    return vectors


CASES = [(name, _quick_vectors(name, spec)) for name, spec in QUICK.items()]
CASES.append(("exec", _exec_vectors()))


@pytest.mark.parametrize("name,vectors", CASES, ids=[c[0] for c in CASES])
def test_the_fast_parser_agrees_with_argparse(name, vectors):
    problems = [p for p in map(_compare, vectors) if p]
    assert not problems, f"{len(problems)} disagreements, e.g.:\n" + "\n".join(problems[:15])


@pytest.mark.parametrize("argv", [
    ["history"], ["history", "build", "-n", "5", "--json"], ["history", "--status=failed"],
    ["history", "--since", "7d", "--project", "p", "--jsonl"], ["--db", "x.db", "list"],
    ["list", "--limit", "3", "--db=x.db"], ["info", "latest"], ["info", "abcd", "--json"],
    ["history", "--project", "-5"], ["history", "-n", "-1"], ["history", "--plain"],
    ["exec", "--task", "t", "--", "echo", "hi"], ["--db", "x.db", "exec", "--", "true"],
    ["exec", "--project=p", "--run", "r", "--", "sh", "-c", "exit 3"],
])
def test_the_everyday_vectors_take_the_fast_path(argv):
    """The budget is only kept if ordinary command lines do not fall back to argparse."""
    assert _fast(argv) is not None
    assert _compare(argv) is None


def test_a_refusal_is_left_to_argparse():
    """What argparse refuses, the fast parser declines, so the user sees argparse's
    message and exit 2."""
    for argv in (["history", "--project"], ["history", "--since", "-3d"], ["info"],
                 ["list", "--limit", "x"], ["history", "--status", "--json"],
                 ["exec", "--run", "--", "--", "echo"], ["history", "--bogus"]):
        assert _fast(argv) is None, argv
        assert _argparse(argv) == (None, 2), argv
