"""Every command shown in README.md runs as shown, on the sample history.

How examples are found and run: tests/docexamples.py. docs/*.md get the same in
tests/test_docs.py.
"""

import pytest

from docexamples import (README, check_inline_commands, check_synopsis, doc_items, of_kind,
                         run_command, run_python, run_script, runnable_part)
from docexamples import committed_sample_untouched  # noqa: F401  (autouse fixture)

ITEMS = doc_items(README)


def _ids(kind):
    return of_kind(ITEMS, kind)


def test_the_readme_shows_commands():
    # the extraction itself: a README edit that broke the fences would run nothing
    kinds = {i.kind for i in ITEMS}
    assert {"command", "script", "python", "synopsis"} <= kinds
    assert any(i.output for i in ITEMS), "no console block with output found"
    assert any(runnable_part(i.text) for i in ITEMS if i.kind == "command")


@pytest.mark.parametrize("item", _ids("command"), ids=lambda i: i.id)
def test_command_runs_as_shown(item, tmp_path):
    run_command(item, tmp_path)


@pytest.mark.parametrize("item", _ids("synopsis"), ids=lambda i: i.id)
def test_synopsis_names_real_options(item, tmp_path):
    check_synopsis(item, tmp_path)


def test_inline_commands_name_real_commands_and_options(tmp_path):
    """`ottolytics ...` in the prose and tables: the subcommand and each option exist."""
    assert check_inline_commands(README, tmp_path)


@pytest.mark.parametrize("item", _ids("script"), ids=lambda i: i.id)
def test_script_runs_as_shown(item, tmp_path):
    run_script(item, tmp_path)


@pytest.mark.parametrize("item", _ids("python"), ids=lambda i: i.id)
def test_python_example_runs(item, tmp_path):
    run_python(item, tmp_path)
