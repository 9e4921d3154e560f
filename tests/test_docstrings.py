"""help() teaches: every public function and method of the API a user calls
(``ottolytics.open``, History's frames and analytics, the plots, the recorders
and their handles) has a docstring with Parameters (when it takes any), Returns and an
Example, and every Example runs: History's and the plots' on the sample history
as ``h`` (with ``plots``), the
recorders' on a scratch store as ``rec`` (the async ones inside a coroutine)."""

import inspect
import re
import subprocess
import sys
import textwrap

import pytest

import ottolytics
from ottolytics.analyze import plots
from ottolytics.analyze.history import History
from ottolytics.record.async_recorder import AsyncRecorder, AsyncRun, AsyncTask
from ottolytics.record.recorder import Recorder, Run, Task

from docexamples import Sandbox

# Plumbing of the read engine, not API for users: issue 15 takes it off the
# public surface (docs/python-api.md, "SQL builders").
PLUMBING = {"query", "query_arrow"}
CLASSES = [History, Recorder, Run, Task, AsyncRecorder, AsyncRun, AsyncTask]
ASYNC = {AsyncRecorder, AsyncRun, AsyncTask}


def _public(cls):
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or name in PLUMBING or name.endswith("_sql"):
            continue
        if inspect.isfunction(member) or isinstance(member, property):
            yield f"{cls.__name__}.{name}", member


def _surface():
    functions = [(f"plots.{name}", fn) for name, fn in inspect.getmembers(plots)
                 if inspect.isfunction(fn) and not name.startswith("_")
                 and fn.__module__ == plots.__name__]
    return [("ottolytics.open", ottolytics.open)] + functions + [
        item for cls in CLASSES for item in _public(cls)]


SURFACE = _surface()


def _section(doc, title):
    """The lines of a numpydoc section (*title* underlined by dashes), or None."""
    m = re.search(rf"^{title}s?\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    return m.group(1) if m else None


def _takes_parameters(fn):
    return any(p.name not in ("self", "cls") for p in inspect.signature(fn).parameters.values())


@pytest.mark.parametrize("name,member", SURFACE, ids=[n for n, _ in SURFACE])
def test_every_public_name_has_a_docstring_that_teaches(name, member):
    doc = inspect.getdoc(member)
    assert doc and doc.strip(), f"{name} has no docstring"
    if isinstance(member, property):
        return                        # an attribute: one line says what it is
    missing = [title for title in ("Returns", "Example")
               if _section(doc, title) is None]
    if _takes_parameters(member) and _section(doc, "Parameters") is None:
        missing.insert(0, "Parameters")
    assert not missing, f"{name}'s docstring has no {', '.join(missing)} section"
    params = [p for p in inspect.signature(member).parameters if p not in ("self", "cls")]
    listed = _section(doc, "Parameters") or ""
    unnamed = [p for p in params if not re.search(rf"(^|[ ,*]){p}\b", listed, re.M)]
    assert not unnamed, f"{name}'s Parameters do not name {', '.join(unnamed)}"


def _example(member):
    """The Example's code, without the prompts."""
    section = _section(inspect.getdoc(member) or "", "Example") or ""
    return "\n".join(line[4:] for line in section.splitlines()
                     if line.startswith((">>> ", "... ")))


RUNNER = '''
import asyncio, sys, traceback
import ottolytics

failed = []
EXAMPLES = {examples!r}
for name, kind, code in EXAMPLES:
    try:
        if kind == "history":
            h = ottolytics.open()
            exec(code, {{"ottolytics": ottolytics, "h": h, "plots": ottolytics.plots}})
            h.close()
        elif kind == "recorder":
            rec = ottolytics.Recorder({store!r})
            exec(code, {{"ottolytics": ottolytics, "rec": rec}})
            rec.close()
        elif kind == "async":
            body = "async def _example(rec):\\n" + "\\n".join(
                "    " + line for line in code.splitlines())
            scope = {{"ottolytics": ottolytics, "asyncio": asyncio}}
            exec(body, scope)
            async def main():
                async with ottolytics.AsyncRecorder({store!r}) as rec:
                    await scope["_example"](rec)
            asyncio.run(main())
        else:
            exec(code, {{"ottolytics": ottolytics, "asyncio": asyncio}})
    except Exception:
        failed.append(name + ":\\n" + code + "\\n" + traceback.format_exc())
print("\\n\\n".join(failed))
sys.exit(1 if failed else 0)
'''


def test_every_example_runs(tmp_path):
    box = Sandbox(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    examples = []
    for name, member in SURFACE:
        if isinstance(member, property):
            continue
        owner = name.split(".")[0]
        code = _example(member).replace("/tmp/", f"{scratch}/")
        if not code:
            continue            # the test above says what is missing
        if name == "ottolytics.open" or owner in ("History", "plots"):
            kind = "history"
        elif owner in {c.__name__ for c in ASYNC}:
            kind = "plain" if name == "AsyncRecorder.__init__" else "async"
        else:
            kind = "recorder"
        examples.append((name, kind, code))
    for cls in (Recorder, AsyncRecorder):        # the class's own example
        examples.append((cls.__name__, "plain",
                         _example(cls).replace("/tmp/", f"{scratch}/")))
    script = tmp_path / "examples.py"
    script.write_text(RUNNER.format(examples=examples, store=str(scratch / "rec.db")))
    done = subprocess.run([sys.executable, str(script)], cwd=box.checkout, env=box.env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, textwrap.shorten(done.stdout, 20000) + done.stderr[-3000:]
