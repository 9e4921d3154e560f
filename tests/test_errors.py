"""One error tree (core.errors), mapped to exit codes and one line once, in the
CLI's main; the old names of the same errors still work."""

import pytest

from ottolytics.cli import main as cli_main
from ottolytics.core import errors


def test_the_old_names_are_the_tree():
    from ottolytics.analyze import duck
    from ottolytics.core.paths import LogRefused
    from ottolytics.manage import retention, runinfo
    from ottolytics.mcp.server import Refused
    from ottolytics.store import connection, migrations
    assert runinfo.RunNotFound is connection.UnknownRun is errors.RunNotFound
    assert migrations.StoreError is errors.StoreError and duck.ReadError is errors.ReadError
    for name in ("SchemaTooNew", "NotAStore", "Unreadable", "StoreLocked", "NotUtf8"):
        assert issubclass(getattr(migrations, name), errors.StoreError)
    assert issubclass(connection.StoreBusy, errors.StoreError)
    assert issubclass(errors.RunNotFound, (KeyError)) and issubclass(errors.RunNotFound,
                                                                     errors.StoreError)
    assert issubclass(retention.PolicyError, errors.ConfigError)
    assert issubclass(retention.PolicyError, ValueError)
    assert issubclass(LogRefused, errors.Refused) and issubclass(Refused, errors.Refused)
    assert issubclass(errors.UsageError, ValueError)


def test_a_not_found_message_is_not_quoted_like_a_keyerror():
    assert str(errors.RunNotFound("abcd: no such run")) == "abcd: no such run"


@pytest.mark.parametrize("error, code", [
    (errors.UsageError("--x 5: must be 1 or more"), 2),
    (errors.RunNotFound("abcd: no such run; list runs with 'ottolytics history'"), 1),
    (errors.StoreError("s.db: locked; try again"), 1),
    (errors.ConfigError("ottolytics.toml: keep_days = 'x': expected a number"), 1),
    (errors.Refused("x.log: not read: outside its run's directory"), 1),
    (OSError(13, "Permission denied"), 1),
])
@pytest.mark.parametrize("argv, name", [(["info", "abcd"], "cmd_info"),
                                        (["doctor"], "cmd_doctor"),
                                        (["stats"], "cmd_stats")])
def test_main_maps_each_error_to_its_code_and_one_line(argv, name, error, code,
                                                       monkeypatch, capsys):
    def command(args):
        raise error
    monkeypatch.setattr(cli_main, name, command)
    assert cli_main.main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ottolytics: error: ")
    assert str(error.args[-1]) in err and "Traceback" not in err


def test_main_maps_sqlite_errors_to_the_store_line(monkeypatch, capsys, tmp_path):
    import sqlite3

    def command(args):
        raise sqlite3.OperationalError("database is locked")
    monkeypatch.setattr(cli_main, "cmd_doctor", command)
    assert cli_main.main(["--db", str(tmp_path / "s.db"), "doctor"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s.db" in err


# What main's _run maps: a handler catching one of these and only re-reporting
# it the same way (one line, exit 1) repeats that mapping.
_MAPPED = {"Error", "OSError", "OttolyticsError", "StoreError", "ReadError", "NotFound",
           "RunNotFound", "Refused", "ConfigError", "PolicyError", "LogRefused",
           "StoreBusy", "SchemaTooNew", "NotAStore", "Unreadable", "StoreLocked", "NotUtf8"}


def _caught(handler):
    import ast
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {k.attr if isinstance(k, ast.Attribute) else getattr(k, "id", None) for k in kinds}


def _only_reports(handler):
    """True when the handler's body is main's mapping again: ``return
    _store_failed(exc, args)``, ``return _fail(exc)`` / ``_fail(str(exc)[, 1])``,
    or ``_err(str(exc)); return 1``."""
    import ast
    name = handler.name

    def is_exc(node):  # exc or str(exc)
        if isinstance(node, ast.Name):
            return node.id == name
        return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "str"
                and len(node.args) == 1 and is_exc(node.args[0]))

    def call(node, func):
        return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == func)

    body = handler.body
    if name is None:
        return False
    if len(body) == 1 and isinstance(body[0], ast.Return):
        value = body[0].value
        if call(value, "_store_failed"):
            return True
        if call(value, "_fail") and value.args and is_exc(value.args[0]):
            rest = value.args[1:]
            return not rest or (isinstance(rest[0], ast.Constant) and rest[0].value == 1)
    if (len(body) == 2 and isinstance(body[0], ast.Expr) and call(body[0].value, "_err")
            and is_exc(body[0].value.args[0]) and isinstance(body[1], ast.Return)
            and isinstance(body[1].value, ast.Constant) and body[1].value.value == 1):
        return True
    return False


def test_no_command_repeats_mains_error_mapping():
    """The mapping of an error to its line and exit code lives in main's _run
    only: a command lets the store's, sqlite3's and the system's errors rise."""
    import ast
    import pathlib
    import ottolytics.cli
    found = []
    for path in sorted(pathlib.Path(ottolytics.cli.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = set()
        if path.name == "main.py":
            skip = {n for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_run"
                    for n in ast.walk(f)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.ExceptHandler) and node not in skip
                    and node.type is not None and _caught(node) & _MAPPED
                    and _only_reports(node)):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"handlers that repeat main._run's mapping: {found}"
