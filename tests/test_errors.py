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
