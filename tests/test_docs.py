"""docs/: every example in it runs, and what the code offers is documented in it.

- Every shell, console, cron, Python and SQL example in docs/*.md runs on a copy of
  the sample history, as README.md's do (tests/docexamples.py says how; README.md's
  run in tests/test_readme.py). A block that cannot run carries
  ``<!-- not run: REASON -->`` right before its fence, in README.md too; there are
  at most MAX_NOT_RUN of them.
- Every command of the CLI, found by walking its argparse parser (``export parquet``
  and ``run start`` included), has a section in docs/cli.md that names each of its
  options.
- Every public name of a History (``dir()`` of one, without ``_`` names) and every
  name in ``ottolytics.__all__`` is in docs/python-api.md; every ``h.NAME`` the
  documents use exists.
- Links between the documents resolve, to files and to headings; every module and
  source file the documents name exists.

Nothing here lists the commands or the methods: they are read from the code, so a
command or a method added later fails until it is documented.
"""

import argparse
import importlib
import re
import shutil

import pytest

import ottolytics
from docexamples import (DOCS, README, ROOT, RUNNABLE, SAMPLE, check_inline_commands,
                         check_synopsis, doc_items, doc_paths, of_kind, read_blocks,
                         run_command, run_python, run_script, run_sql, runnable_part)
from docexamples import committed_sample_untouched  # noqa: F401  (autouse fixture)
from ottolytics.cli.main import build_parser

DOC_FILES = sorted(DOCS.glob("*.md"))
CLI_DOC = DOCS / "cli.md"
API_DOC = DOCS / "python-api.md"
MAX_NOT_RUN = 12
EXPECTED = {"index", "recording", "importing", "python-api", "cli", "exports", "managing",
            "store", "internals", "benchmarks", "mcp", "development"}

ITEMS = [item for doc in DOC_FILES for item in doc_items(doc)]


def _ids(kind):
    return of_kind(ITEMS, kind)


def _text(doc):
    return doc.read_text(encoding="utf-8")


# -- the examples ---------------------------------------------------------------


def test_the_docs_are_there_and_show_examples():
    assert EXPECTED <= {d.stem for d in DOC_FILES}
    kinds = {i.kind for i in ITEMS}
    assert {"command", "script", "python", "synopsis", "sql"} <= kinds
    assert any(i.output for i in ITEMS), "no console block with output found"
    assert sum(1 for i in ITEMS if i.kind == "command" and runnable_part(i.text)) >= 20


def test_every_block_runs_or_says_why_not():
    not_run, problems = [], []
    for doc in doc_paths():
        lines = _text(doc).splitlines()
        for n, line in enumerate(lines):
            if re.match(r"^\s*<!--\s*not run", line):
                reason = re.match(r"^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$", line)
                if not reason or len(reason.group(1).split()) < 3:
                    problems.append(f"{doc.name} line {n + 1}: write it as "
                                    "<!-- not run: REASON --> with a reason")
                if n + 1 >= len(lines) or not re.match(r"^\s*```", lines[n + 1]):
                    problems.append(f"{doc.name} line {n + 1}: a not-run marker must be the "
                                    "line right before a code fence")
        for block in read_blocks(_text(doc)):
            if block.not_run:
                not_run.append(f"{doc.name} line {block.line}: {block.not_run}")
            elif block.lang not in RUNNABLE:
                problems.append(f"{doc.name} line {block.line}: a ```{block.lang} block cannot "
                                f"run; show it as one of {sorted(RUNNABLE)}, or mark it "
                                "<!-- not run: REASON -->")
    assert not problems, "\n".join(problems)
    assert not_run, "the marker is never used: this test would not see it"
    assert len(not_run) <= MAX_NOT_RUN, (
        f"{len(not_run)} blocks are not run (at most {MAX_NOT_RUN}): make examples that "
        "run\n" + "\n".join(not_run))


@pytest.mark.parametrize("item", _ids("command"), ids=lambda i: i.id)
def test_command_runs_as_shown(item, tmp_path):
    run_command(item, tmp_path)


@pytest.mark.parametrize("item", _ids("synopsis"), ids=lambda i: i.id)
def test_synopsis_names_real_options(item, tmp_path):
    check_synopsis(item, tmp_path)


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda d: d.name)
def test_inline_commands_name_real_commands_and_options(doc, tmp_path):
    check_inline_commands(doc, tmp_path)


@pytest.mark.parametrize("item", _ids("script"), ids=lambda i: i.id)
def test_script_runs_as_shown(item, tmp_path):
    run_script(item, tmp_path)


@pytest.mark.parametrize("item", _ids("python"), ids=lambda i: i.id)
def test_python_example_runs(item, tmp_path):
    run_python(item, tmp_path)


@pytest.mark.parametrize("item", _ids("sql"), ids=lambda i: i.id)
def test_sql_example_runs(item, tmp_path):
    run_sql(item, tmp_path)


# -- the CLI reference -------------------------------------------------------------


def _commands(parser, prefix=()):
    """(('export', 'parquet'), its parser), ... for every command, nested ones too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _commands(sub, prefix + (name,))


def _sections(text):
    """{heading text: the text below it up to the next heading of its level or above}."""
    lines = text.splitlines()
    heads, fence = [], False
    for n, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^(#+)\s+(.*)$", line)
        if m:
            heads.append((n, len(m.group(1)), m.group(2)))
    out = {}
    for k, (n, level, title) in enumerate(heads):
        end = next((m for m, lv, _ in heads[k + 1:] if lv <= level), len(lines))
        out[title] = "\n".join(lines[n + 1:end])
    return out


def _mentions(text, option):
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


COMMANDS = list(_commands(build_parser()))


def test_the_parser_walk_finds_nested_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"history", "run start", "export parquet", "report weekly"} <= names


@pytest.mark.parametrize("path,parser", COMMANDS, ids=lambda x: " ".join(x)
                         if isinstance(x, tuple) else "")
def test_every_command_is_in_the_cli_reference(path, parser):
    command = "ottolytics " + " ".join(path)
    sections = _sections(_text(CLI_DOC))
    mine = [body for title, body in sections.items()
            if re.search(rf"`{re.escape(command)}(`| )", title)]
    assert mine, (f"`{command}` has no section in docs/cli.md: add a heading that names it "
                  f"(### `{command}`)")
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        return   # a group (run, export, report): its commands have the sections
    body = "\n".join(mine)
    missing = [" / ".join(a.option_strings) for a in parser._actions
               if a.option_strings and "--help" not in a.option_strings
               and "--db" not in a.option_strings
               and not any(_mentions(body, o) for o in a.option_strings)]
    assert not missing, (f"docs/cli.md's section on `{command}` does not name its "
                         f"option(s) {', '.join(missing)}")


def test_global_options_are_in_the_cli_reference():
    sections = _sections(_text(CLI_DOC))
    body = sections.get("Global options", "")
    for action in build_parser()._actions:
        if action.option_strings and "--help" not in action.option_strings:
            assert any(_mentions(body, o) for o in action.option_strings), (
                f"docs/cli.md's Global options do not name {action.option_strings}")
    assert _mentions(body, "--db")


# -- the Python API ----------------------------------------------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    store = tmp_path_factory.mktemp("api") / "ottolytics.db"
    shutil.copyfile(SAMPLE / "ottolytics.db", store)
    h = ottolytics.open(str(store))
    yield h
    h.close()


def _public(history):
    """History's public surface: its class's names and an open one's attributes."""
    names = {n for n in dir(ottolytics.History) if not n.startswith("_")}
    names |= {n for n in dir(history) if not n.startswith("_")}
    return sorted(names)


def _documented(name, text):
    return re.search(rf"`(?:h\.|History\.|ottolytics\.)?{re.escape(name)}(?![\w])", text)


def test_every_public_history_name_is_in_the_python_api(history):
    text = _text(API_DOC)
    names = _public(history)
    assert {"tasks", "runs", "success_rate"} <= set(names)   # the introspection works
    missing = [n for n in names if not _documented(n, text)]
    assert not missing, ("docs/python-api.md does not document History's "
                         + ", ".join(f"h.{n}" for n in missing))


def test_every_name_of_the_package_is_in_the_python_api():
    text = _text(API_DOC)
    assert ottolytics.__all__
    missing = [n for n in ottolytics.__all__ if not re.search(
        rf"`ottolytics\.{re.escape(n)}(?![\w])", text)]
    assert not missing, ("docs/python-api.md does not document "
                         + ", ".join(f"ottolytics.{n}" for n in missing))


def test_the_docs_use_only_history_names_that_exist(history):
    names = set(_public(history))
    wrong = []
    for doc in doc_paths():
        for n, line in enumerate(_text(doc).splitlines(), 1):
            for name in re.findall(r"(?<![\w.])h\.([A-Za-z_]\w*)", line):
                if name not in names:
                    wrong.append(f"{doc.name} line {n}: h.{name}")
    assert not wrong, "History has no such name:\n" + "\n".join(wrong)


# -- links and names ----------------------------------------------------------------


def _slug(title):
    """GitHub's anchor for a heading."""
    title = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
    return title.replace(" ", "-")


def _anchors(doc):
    return {_slug(title) for title in _sections(_text(doc))}


def test_links_between_the_documents_resolve():
    broken = []
    for doc in doc_paths():
        for n, line in enumerate(_text(doc).splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z]+:", target):
                    continue    # a web address
                path, _, anchor = target.partition("#")
                file = (doc.parent / path).resolve() if path else doc
                if not file.exists():
                    broken.append(f"{doc.name} line {n}: {target} (no such file)")
                elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                    broken.append(f"{doc.name} line {n}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_doc_is_reachable_from_the_index():
    index = _text(DOCS / "index.md")
    missing = [d.name for d in DOC_FILES if d.name != "index.md"
               and f"({d.name}" not in index]
    assert not missing, f"docs/index.md does not link {', '.join(missing)}"
    assert "(docs/index.md)" in _text(README)


def _resolves(dotted):
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


FILE_NAMES = {"db", "toml", "prom"}   # ottolytics.db, ottolytics.toml: files, not modules


def test_modules_and_files_the_docs_name_exist():
    wrong = []
    for doc in doc_paths():
        for n, line in enumerate(_text(doc).splitlines(), 1):
            for span in re.findall(r"`([^`]+)`", line):
                for dotted in re.findall(r"(?<![\w./-])(ottolytics(?:\.[A-Za-z_]\w*)+)", span):
                    if dotted.split(".")[1] not in FILE_NAMES and not _resolves(dotted):
                        wrong.append(f"{doc.name} line {n}: {dotted}")
                for path in re.findall(r"(?<![\w./-])((?:ottolytics|tests|scripts)/[\w/]+\.py)",
                                       span):
                    if not (ROOT / path).exists():
                        wrong.append(f"{doc.name} line {n}: {path}")
    assert not wrong, "the docs name modules or files that do not exist:\n" + "\n".join(wrong)


def test_every_package_and_module_is_in_the_internals_layout():
    """A newcomer finds where a change belongs from docs/internals.md's table: each
    package of ottolytics/ has its row, naming each of its modules."""
    rows = [line for line in _text(DOCS / "internals.md").splitlines() if line.startswith("|")]
    packages = sorted(p for p in (ROOT / "ottolytics").iterdir() if (p / "__init__.py").exists())
    assert packages
    missing, stale = [], []
    for package in packages:
        row = next((r for r in rows if r.startswith(f"| `ottolytics/{package.name}/`")), None)
        if row is None:
            missing.append(f"ottolytics/{package.name}/")
            continue
        missing += [f"ottolytics/{package.name}/{m.name}" for m in sorted(package.glob("*.py"))
                    if m.stem != "__init__" and f"`{m.stem}`" not in row]
        modules = row.split("|")[2]
        stale += [f"ottolytics/{package.name}/{name}.py" for name in re.findall(r"`(\w+)`", modules)
                  if not (package / f"{name}.py").exists()]
    assert not missing, ("docs/internals.md's package layout does not name "
                         + ", ".join(missing))
    assert not stale, "docs/internals.md names modules that do not exist: " + ", ".join(stale)
    for row in rows:
        named = re.match(r"^\| `ottolytics/(\w+)/`", row)
        assert not named or (ROOT / "ottolytics" / named.group(1) / "__init__.py").exists(), (
            f"docs/internals.md names a package that does not exist: {row[:60]}")
