"""Every example shown in README.md and docs/*.md runs as shown, on the sample history.

The machinery behind tests/test_readme.py (README.md) and tests/test_docs.py
(docs/*.md). The documents are read when the tests run, so an example added to
them later is covered without touching these files.

Every fenced block runs, unless the line right before its fence is an HTML comment
``<!-- not run: REASON -->`` (a configuration file, an output sample, a listing of
other tools' calls); tests/test_docs.py fails on a block of a language it cannot
run that has no such marker, and limits how many there are. What counts as a
command:

- each line of a ```sh block, typed in order: each runs after the lines before it,
  in the same sandbox (a block starting with ``#!`` is one script);
- each ``$ `` line of a ```console block, and the lines after it up to the next
  ``$ `` are the output it shows;
- each line of a ```cron block, without its five schedule fields (``\\%`` is
  cron's escape for ``%``);
- each ```python block. Blocks with nothing but blank lines between them are one
  example and run in order in one sandbox (the cron line that writes a Parquet
  dataset, then the Python that opens it);
- each ```sql block, run with sqlite3 on the sample's store: it must return rows.

How each runs, the way a user would on the sample:

- in a fresh sandbox per command: a directory standing for the checkout, holding
  a copy of ``data/sample``, as the working directory (so ``data/sample/...`` names
  the copy), ``HOME`` an empty directory, ``TZ=UTC``, the installed ``ottolytics``
  first on ``PATH``, and no ``OTTO*`` variables inherited;
- ``OTTO_HOME`` is that copy, unless the command names its store or home itself
  (``--db``, ``OTTO_HOME=``, ``OTTOLYTICS_DB=``, ``--otto-home``);
- absolute paths that don't exist here (``/tmp/sample-home``,
  ``/srv/reports/...``, ``/mnt/shared/...``) are moved under the sandbox, with
  their parent directory made, as whoever wrote the cron line would have;
- a Python example runs with ``import ottolytics`` before it (a later block
  continues an earlier one), top-level ``await`` allowed, the functions it calls
  but leaves to the reader (``lint()``, ``build()``) defined as no-ops, and each
  ``*.db`` it names that doesn't exist made as a copy of the sample's store, so
  ``ottolytics.open()`` and ``ottolytics.open("ci.db")`` open a copy of the sample.
  One that uses other names it never defines fails: it is not self-contained;
- a script runs with ``sh`` in a project directory holding one passing test (for
  its ``pytest``) and, when it calls ``make``, the Makefile its document shows.

Each must exit 0, or the code a trailing ``# exits N`` comment gives, and print no
traceback. A console or sh example must find something on the sample: output
saying "no runs" or "no such" fails it. Output a console block shows is compared
line by line (runs of spaces collapsed) with what the command prints. A synopsis
line (``ottolytics sync [--source S] [PATH...]``) is not run: every option it names
must be one that the command's ``--help`` lists, and so must every
``ottolytics ...`` that the prose and the tables name in backticks. Parts of
commands that cannot run in a test are in EXCLUDED below, each with its reason.
Afterwards the committed ``data/sample`` must be byte for byte as it was.
"""

import ast
import builtins
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SAMPLE = ROOT / "data" / "sample"
BIN = Path(sys.executable).parent

# (pattern searched in a command or a segment of one, reason). A segment of a
# line joined by `&&` that matches is left out and the rest of the line runs.
EXCLUDED = [
    (r"^python3? -m venv\b", "creates a virtualenv: the test runs in the one installed"),
    (r"^(\.|source) \S*activate$", "activates that virtualenv"),
    (r"^pip install\b", "installs the package: the test runs against the installed one"),
    (r"^pytest\b", "the test suite itself; .ci/run runs this line in a fresh clone"),
    (r"^jupyter lab\b", "an interactive server; tests/test_notebooks.py executes every "
                        "notebook top to bottom"),
    (r"^claude mcp add\b", "registers the server with a client that is not installed here"),
    (r"\bottolytics mcp\b", "a stdio server that waits for a client; "
                            "tests/test_mcp_server.py runs it with a real client session"),
    (r"\bottolytics\b.*\blogs\b.*(\s-f\b|--follow\b)", "follows a log until interrupted"),
    (r"\bottolytics bench\b(?!.*--quick)", "full sizes take minutes of both cores"),
    (r"\bottolytics bench\b.*--quick", "about 10 s on a quiet machine but over 5 minutes on "
                                       "a loaded one, and its exit code is whether this "
                                       "machine met timing goals"),
]

TRACEBACK = "Traceback (most recent call last)"
# an example that answers "nothing" on the sample shows nothing (a cron line is
# for a live system, so it may find an empty week)
EMPTY_ANSWER = re.compile(r"\bno runs\b|\bno such\b|\bnothing (?:found|matches)\b", re.I)
EXIT_COMMENT = re.compile(r"#.*\bexits? (\d+)\b")
SYNOPSIS = re.compile(r"\[[^\]]*\]|\.\.\.|\b[A-Z][A-Z_]+\b(?![=/.])")
NAMES_STORE = re.compile(r"(--db\b|\bOTTO_HOME=|\bOTTOLYTICS_DB=|--otto-home\b)")
# an absolute path in a command, not one of the system's own
ABS_PATH = re.compile(r"(?<![\w.~/$-])(/(?!usr/|bin/|etc/|dev/|proc/|sys/)[A-Za-z][\w.+-]*"
                      r"(?:/[\w.+%()$=-]*)*)")


NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$")
RUNNABLE = {"sh", "console", "cron", "python", "sql"}


def doc_paths():
    """README.md, then docs/*.md."""
    return [README] + sorted(DOCS.glob("*.md"))


def where(doc, line):
    return f"{doc.relative_to(ROOT)} line {line}"


@dataclass
class Block:
    lang: str
    line: int                  # line number of the opening fence
    text: str
    chained: bool = False      # only blank lines since the previous block
    not_run: str = None        # the reason a <!-- not run: ... --> right before it gives


@dataclass
class Item:
    kind: str                  # command, script, python, sql, synopsis
    line: int
    text: str
    output: list = field(default_factory=list)   # the output a console block shows
    before: list = field(default_factory=list)   # items of the same example run first
    lang: str = ""
    doc: Path = README

    @property
    def id(self):
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        name = "" if self.doc == README else f"{self.doc.stem}:"
        return f"{name}L{self.line}:{first[:60]}"

    @property
    def where(self):
        return where(self.doc, self.line)


def read_blocks(text):
    blocks, lines = [], text.splitlines()
    i, last_end = 0, -1
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        chained = last_end >= 0 and all(not lines[k].strip() for k in range(last_end + 1, start))
        marker = NOT_RUN.match(lines[start - 1]) if start else None
        blocks.append(Block(lang, start + 1, "\n".join(body), chained,
                            marker.group(1) if marker else None))
        last_end = i
        i += 1
    return blocks


def _logical_lines(block):
    """(line number, text) of each line, with backslash continuations joined."""
    out, buf, first = [], "", None
    for k, line in enumerate(block.text.splitlines()):
        if first is None:
            first = block.line + 1 + k
        if line.endswith("\\") and block.lang != "cron":
            buf += line[:-1] + " "
            continue
        out.append((first, buf + line))
        buf, first = "", None
    return out


def items_of(block):
    if block.not_run:
        return []
    if block.lang == "sh":
        if block.text.startswith("#!"):
            return [Item("script", block.line + 1, block.text)]
        items = []
        for n, line in _logical_lines(block):
            if line.strip() and not line.lstrip().startswith("#"):
                items.append(Item("synopsis" if is_synopsis(line) else "command", n, line))
        return items
    if block.lang == "console":
        items = []
        for n, line in _logical_lines(block):
            if line.startswith("$ "):
                items.append(Item("command", n, line[2:]))
            elif items and line.strip():
                items[-1].output.append(line)
        return items
    if block.lang == "cron":
        items = []
        for n, line in _logical_lines(block):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split(None, 1 if line.startswith("@") else 5)
            items.append(Item("command", n, fields[-1].replace("\\%", "%")))
        return items
    if block.lang == "python":
        return [Item("python", block.line + 1, block.text)]
    if block.lang == "sql":
        return [Item("sql", block.line + 1, block.text)]
    return []


def is_synopsis(line):
    """A usage line (`ottolytics exec [--project P] -- CMD ARGS...`), not a command."""
    code = strip_comment(line)
    return code.startswith("ottolytics ") and bool(SYNOPSIS.search(_unquoted(code)))


def _unquoted(text):
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)


def doc_items(doc=README):
    """The items of one document, in order."""
    items, previous = [], []
    for block in read_blocks(doc.read_text(encoding="utf-8")):
        found = items_of(block)
        if not block.chained:
            previous = []
        session = []
        for item in found:
            if item.kind == "python":
                item.before = list(previous)
            elif item.kind == "command" and block.lang == "sh":
                item.before = list(session)     # a sh block is typed line after line
                session.append(item)
        # Python in a block right after others continues their example (it reads
        # what the commands before it wrote)
        previous = previous + [i for i in found if i.kind in ("command", "python")]
        for item in found:
            item.lang = block.lang
            item.doc = doc
        items.extend(found)
    return items


def strip_comment(line):
    """The line without a shell comment (a # after a blank, outside quotes)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def excluded(text):
    for pattern, reason in EXCLUDED:
        if re.search(pattern, text.strip()):
            return reason
    return None


def runnable_part(command):
    """The command without its excluded `&&` segments; None if nothing is left."""
    parts = [p.strip() for p in strip_comment(command).split("&&")]
    kept = [p for p in parts if not excluded(p)]
    return " && ".join(kept) if kept else None


def exclusion_reasons(command):
    return "; ".join(sorted({excluded(p.strip()) for p in strip_comment(command).split("&&")
                             if excluded(p.strip())}))


def expected_code(command):
    m = EXIT_COMMENT.search(command)
    return int(m.group(1)) if m else 0


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module", autouse=True)
def committed_sample_untouched():
    """Import this fixture into a test module that runs examples (it is autouse)."""
    if not (BIN / "ottolytics").exists():
        pytest.fail(f"no ottolytics command beside {sys.executable}: run the tests in the "
                    "virtualenv the package is installed in (pip install -e '.[test]')")
    before = _digest(SAMPLE)
    yield
    assert _digest(SAMPLE) == before, "an example in the docs changed the committed data/sample"


class Sandbox:
    def __init__(self, root):
        self.root = root
        self.checkout = root / "checkout"
        self.home = root / "home"
        self.sample = self.checkout / "data" / "sample"
        self.home.mkdir(parents=True)
        (self.checkout / "data").mkdir(parents=True)
        shutil.copytree(SAMPLE, self.sample, symlinks=True)
        for suffix in ("-wal", "-shm"):
            for stale in self.sample.glob(f"*{suffix}"):
                stale.unlink()

    def reroot(self, text):
        def move(m):
            path = m.group(1)
            if os.path.exists(path) or path.startswith(str(self.root)):
                return path
            moved = self.root / "abs" / path.lstrip("/")
            moved.parent.mkdir(parents=True, exist_ok=True)
            return str(moved)
        return ABS_PATH.sub(move, text)

    def env(self, command=""):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OTTO", "ONESHOT", "XDG_")) and k != "TMPDIR"}
        env.update(HOME=str(self.home), TZ="UTC", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        env.pop("NO_COLOR", None)
        if not NAMES_STORE.search(command):
            env["OTTO_HOME"] = str(self.sample)
        return env

    def sh(self, command, cwd=None, timeout=300):
        return subprocess.run(["bash", "-c", self.reroot(command)], cwd=cwd or self.checkout,
                              env=self.env(command), capture_output=True, text=True,
                              timeout=timeout)


def _check(result, what, code):
    shown = f"{what}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert TRACEBACK not in result.stdout + result.stderr, f"traceback from {shown}"
    assert result.returncode == code, f"exit {result.returncode}, expected {code}: {shown}"


def _norm(lines):
    return [" ".join(line.split()) for line in lines if line.strip()]


def of_kind(items, kind):
    return [i for i in items if i.kind == kind]


def run_command(item, tmp_path):
    command = runnable_part(item.text)
    if command is None:
        pytest.skip(f"excluded: {exclusion_reasons(item.text)}")
    box = Sandbox(tmp_path)
    for earlier in item.before:
        if runnable_part(earlier.text):
            _check(box.sh(runnable_part(earlier.text)), f"{earlier.where}: {earlier.text}",
                   expected_code(earlier.text))
    result = box.sh(command)
    _check(result, f"{item.where}: {item.text}", expected_code(item.text))
    if item.lang != "cron" and expected_code(item.text) == 0:
        said = EMPTY_ANSWER.search(result.stdout + result.stderr)
        assert not said, (f"{item.where}: `{item.text}` finds nothing on the "
                          f"sample ({said.group(0)!r}): show one that does\n{result.stdout}"
                          f"{result.stderr}")
    if item.output:
        printed = _norm(result.stdout.splitlines())
        shown = _norm(item.output)
        assert printed[:len(shown)] == shown and len(printed) == len(shown), (
            f"{item.where}: `{item.text}` shows output that differs from what "
            f"it prints on the sample; update the example.\n--- {item.doc.name}\n"
            + "\n".join(item.output) + "\n--- printed\n" + result.stdout)


def _subcommand_and_options(code):
    """(['report', 'weekly'], ['--week', ...]) of `ottolytics report weekly [--week W]`;
    what follows a bare `--` is CMD's, not ours."""
    code = _unquoted(code).split(" -- ")[0]
    words = code.split()[1:]
    sub = []
    for w in words:
        if not re.fullmatch(r"[a-z][a-z-]*", w):
            break
        sub.append(w)
    options = [o for o in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", code) if o != "--"]
    return sub, options


_HELP = {}


def _help(sub, box):
    key = tuple(sub)
    if key not in _HELP:
        result = subprocess.run(["ottolytics", *sub, "--help"], cwd=box.checkout,
                                env=box.env(), capture_output=True, text=True, timeout=60)
        _check(result, f"ottolytics {' '.join(sub)} --help", 0)
        _HELP[key] = result.stdout
    return _HELP[key]


def _assert_options_exist(code, where, box):
    sub, options = _subcommand_and_options(code)
    text = _help(sub, box)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"{where} names {option}, which `ottolytics {' '.join(sub)} --help` does not list")


def check_synopsis(item, tmp_path):
    _assert_options_exist(strip_comment(item.text), item.where, Sandbox(tmp_path))


def check_inline_commands(doc, tmp_path):
    """`ottolytics ...` in the prose and tables: the subcommand and each option exist.
    Returns how many it checked."""
    box = Sandbox(tmp_path)
    spans = []
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for span in re.findall(r"`(ottolytics [^`]+)`", line):
            for code in span.replace("\\|", "|").split("&&"):
                if code.strip().startswith("ottolytics "):
                    spans.append((n, code.strip()))
    for n, code in spans:
        _assert_options_exist(code, f"{where(doc, n)}: `{code}`", box)
    return len(spans)


def _make_block(doc):
    for block in read_blocks(doc.read_text(encoding="utf-8")):
        if block.lang == "make":
            return block.text
    return None


def run_script(item, tmp_path):
    box = Sandbox(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    # the user's project: one passing test for the script's pytest
    (project / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    if re.search(r"^\s*make\b", item.text, re.M):
        makefile = _make_block(item.doc)
        assert makefile, f"the script calls make but {item.doc.name} shows no Makefile"
        (project / "Makefile").write_text(makefile + "\n")
    script = project / "script.sh"
    script.write_text(box.reroot(item.text) + "\n")
    since = time.time() - 1
    result = subprocess.run(["sh", str(script)], cwd=project, env=box.env(),
                            capture_output=True, text=True, timeout=300)
    assert TRACEBACK not in result.stdout + result.stderr, result.stderr
    with sqlite3.connect(box.sample / "ottolytics.db") as db:
        runs = db.execute("SELECT id, status FROM runs WHERE started_at >= ?", (since,)).fetchall()
        assert runs, f"{item.where}: the script recorded no run: {result.stderr}"
        assert all(status != "running" for _, status in runs), (
            f"the script left a run running: {runs}")
        last = db.execute("SELECT name, status FROM tasks WHERE run_id IN (%s) "
                          "ORDER BY started_at DESC LIMIT 1"
                          % ",".join(str(r) for r, _ in runs)).fetchone()
    assert last is not None, "the script recorded no task"
    # the script exits with the status of what it wrapped: 0 when its last task passed
    assert (result.returncode == 0) == (last[1] == "success"), (
        f"{item.where}: exit {result.returncode} after the last task "
        f"{last}\n{result.stdout}\n{result.stderr}")


def _undefined(tree):
    """(functions it calls but never defines, other names it uses but never defines)."""
    defined = set(dir(builtins)) | {"ottolytics"}      # the prelude imports ottolytics
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    loaded = {node.id for node in ast.walk(tree)
              if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return sorted(called - defined), sorted(loaded - called - defined)


RUNNER = """\
import ast, asyncio, sys
path = sys.argv[1]
code = compile(open(path).read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


def run_python(item, tmp_path):
    box = Sandbox(tmp_path)
    for earlier in item.before:        # the commands of the same example, first
        if earlier.kind == "command" and runnable_part(earlier.text):
            _check(box.sh(runnable_part(earlier.text)), earlier.text, expected_code(earlier.text))
    source = "\n".join(e.text for e in item.before if e.kind == "python")
    source = box.reroot(source + "\n" + item.text)
    tree = ast.parse(source)   # top-level await parses; only compiling checks it
    left_to_reader, unknown = _undefined(tree)
    assert not unknown, (f"{item.where}: the example uses {', '.join(unknown)} without "
                         "defining them: make it self-contained, or mark the block "
                         "<!-- not run: why -->")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.endswith(".db") and "/" not in node.value:
            store = box.checkout / node.value
            if not store.exists():   # a store of the reader's own: the sample's
                shutil.copyfile(box.sample / "ottolytics.db", store)
    prelude = ["import ottolytics"]
    prelude += [f"def {name}(*args, **kwargs):\n    return None"   # left to the reader
                for name in left_to_reader]
    script = tmp_path / "example.py"
    script.write_text("\n".join(prelude) + "\n" + source + "\n")
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    result = subprocess.run([sys.executable, str(runner), str(script)], cwd=box.checkout,
                            env=box.env(), capture_output=True, text=True, timeout=300)
    _check(result, f"{item.where}:\n{item.text}", 0)


def run_sql(item, tmp_path):
    box = Sandbox(tmp_path)
    uri = f"file:{box.sample / 'ottolytics.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(item.text).fetchall()
    db.close()
    assert rows, f"{item.where}: the query returns no rows on the sample"
