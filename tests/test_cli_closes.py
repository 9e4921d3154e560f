"""Every History the CLI and the MCP server open is closed again.

A spy wraps ``analyze.history.open`` (the one way cli/ and mcp/ open a History)
and ``History.close``; each command runs in-process, and afterwards every History
it opened must have been closed, on success and on error alike.
"""

import pytest

from known_history import record
from ottolytics.analyze import history as history_module
from ottolytics.cli.main import main


@pytest.fixture
def store(db):
    return str(record(db))


@pytest.fixture
def opened(monkeypatch):
    """The Histories opened while the test runs, each with .spy_closed."""
    seen = []
    real_open, real_close = history_module.open, history_module.History.close

    def spy_open(*args, **kwargs):
        h = real_open(*args, **kwargs)
        h.spy_closed = False
        seen.append(h)
        return h

    def spy_close(self):
        self.spy_closed = True
        return real_close(self)

    monkeypatch.setattr(history_module, "open", spy_open)
    monkeypatch.setattr(history_module.History, "close", spy_close)
    return seen


COMMANDS = [
    ["stats"], ["stats", "test", "--json"], ["stats", "--since", "nonsense"],
    ["flaky"], ["failures", "--groups", "--json"], ["regressions", "--jsonl"],
    ["failures", "--project", "no-such-project"],
    ["logs", "run007"], ["logs", "run007", "test", "--jsonl"], ["logs", "no-such-run"],
    ["grep", "error"], ["grep", "(unclosed"],
    ["report", "weekly", "--week", "2026-W47"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_history_the_cli_opens_is_closed(store, opened, capsys, argv):
    main(["--db", store, *argv])
    capsys.readouterr()
    assert all(h.spy_closed for h in opened), [h for h in opened if not h.spy_closed]


def test_exports_close_their_history(store, opened, tmp_path, capsys):
    assert main(["--db", store, "export", "parquet", str(tmp_path / "pq")]) == 0
    assert main(["--db", store, "export", "prometheus", str(tmp_path / "m.prom")]) == 0
    capsys.readouterr()
    assert len(opened) == 2 and all(h.spy_closed for h in opened)


def test_the_mcp_tools_close_their_history(store, opened):
    from ottolytics.mcp.server import HistoryTools
    with HistoryTools(store) as tools:
        tools.task_stats("test", since="")
        tools.failure_groups(since="")
        assert len(opened) == 1 and not opened[0].spy_closed  # one, kept while serving
    assert opened[0].spy_closed
