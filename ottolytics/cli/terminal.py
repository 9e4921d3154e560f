"""Terminal output of the commands: rich tables and progress bars
on a terminal, plain aligned text otherwise (pipes, files, ``NO_COLOR``).

rich costs ~35 ms to import, more than the quick commands' whole budget, so it
is imported only when stdout (or, for progress, stderr) is a terminal.
"""

import os
import sys
from contextlib import contextmanager

from ottolytics.core.formatting import fancy, printable  # noqa: F401  (fancy: for cli.render)
from ottolytics.core.formatting import table as plain_table


# Columns a narrow terminal never cuts or wraps (the run id is what one copies
# into `info`; a time cut after its date says nothing): the others give way.
WHOLE = ("RUN", "TIMESTAMP", "STARTED", "LAST SEEN", "WEEK", "DURATION")


def print_table(headers, rows, title=None, right=()):
    """Print a table; *right* names the columns to right-align (numbers)."""
    if fancy():
        from rich.console import Console
        from rich.table import Table
        t = Table(title=printable(title), title_justify="left", header_style="bold")
        cells = [["" if c is None else printable(str(c)) for c in r] for r in rows]
        for i, h in enumerate(headers):
            whole = {}
            if h in WHOLE:
                width = max([len(h)] + [len(r[i]) for r in cells])
                whole = {"no_wrap": True, "min_width": width}
            t.add_column(printable(h), justify="right" if h in right else "left", **whole)
        for r in cells:
            t.add_row(*r)
        # No markup, emoji or highlighting: cells are data, and parsing them costs.
        Console(markup=False, emoji=False, highlight=False).print(t)
        return
    if title:
        print(printable(title))
    print(plain_table(headers, rows))


@contextmanager
def progress(description, total=None):
    """A progress bar on stderr when it is a terminal; yields advance(n, total)."""
    if not fancy(sys.stderr):
        yield lambda n, total=None: None
        return
    from rich.progress import Progress
    # No refresh thread: usage forks walkers, and forking a threaded process is unsafe.
    with Progress(transient=True, auto_refresh=False) as bar:
        task = bar.add_task(description, total=total)

        def advance(n, new_total=None):
            if new_total is not None:
                bar.update(task, total=new_total)
            bar.advance(task, n)
            bar.refresh()
        yield advance


def confirm(question):
    """Ask a yes/no question on the terminal; False unless the answer is yes."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
