"""What the commands of cli/ share, below cli.main and cli.questions: the one
line of an error, the bounds of a count option, the History of --db, the check
of --project. Standard library only at import time (the quick commands use it)."""

import sys


def _fail(message, code=1):
    from ottolytics.core.formatting import printable
    print(f"ottolytics: error: {printable(str(message))}", file=sys.stderr)
    return code


MAX_COUNT = 10**9  # rows a count option may ask for; more is a typo, not a store


def _bad_count(flag, value, low=0):
    """Exit 2 with one line unless *value* is a whole number from *low* to MAX_COUNT."""
    if low <= value <= MAX_COUNT:
        return None
    return _fail(f"{flag} {value}: must be a whole number from {low} to {MAX_COUNT:,}", 2)


def _unknown_project(args):
    """None, or the error for a --project that the store does not know."""
    from ottolytics.manage.listing import unknown_project
    why = unknown_project(args.db, args.project)
    return None if why is None else _fail(f"--project {why}")


def _open_history(args):
    """The History of --db; callers close it (``with _open_history(args) as h``)."""
    from ottolytics.analyze.history import open as open_history
    return open_history(args.db)
