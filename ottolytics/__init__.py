"""ottolytics: run-history analytics for otto and other task runners.

The write path (``Recorder``, the ``exec`` shim, the quick commands) uses only
the standard library, so importing this package stays cheap. Names are
resolved lazily so ``import ottolytics`` never pulls in pandas or DuckDB.
"""

__version__ = "0.1.0"

__all__ = ["Recorder", "AsyncRecorder", "open", "History", "plots", "__version__"]

# Type checkers see the public names (the package ships py.typed); at run time
# they stay lazy, and not even typing is imported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ottolytics.analyze import plots
    from ottolytics.analyze.history import History, open
    from ottolytics.record.async_recorder import AsyncRecorder
    from ottolytics.record.recorder import Recorder


def __getattr__(name):
    if name == "Recorder":
        from ottolytics.record.recorder import Recorder

        return Recorder
    if name in ("open", "History"):
        from ottolytics.analyze import history

        return getattr(history, name)
    if name == "AsyncRecorder":
        from ottolytics.record.async_recorder import AsyncRecorder

        return AsyncRecorder
    if name == "plots":
        from ottolytics.analyze import plots

        return plots
    raise AttributeError(f"module 'ottolytics' has no attribute {name!r}")


def __dir__():
    """The public names (the lazy ones included) and the module's own dunders;
    not TYPE_CHECKING, which is there for type checkers alone."""
    return sorted({n for n in globals() if n.startswith("__")} | set(__all__))
