"""The weekly report as an RFC 4180 CSV file (``ottolytics report weekly``). Its
frame, one row per project and task for an ISO week, is analytics:
``History.weekly_report`` (``analyze/weekly.py``, where the week's time zone
rule is); this module writes it.
"""

__all__ = ["write_csv", "to_csv_text", "weekly", "newest_week", "last_complete_week",
           "week_label", "COLUMNS"]

import csv
import io
from datetime import datetime, timedelta

import pandas as pd

from ottolytics.core.files import atomic_write, output_path
from ottolytics.analyze.weekly import (  # noqa: F401  (the report's names, as before)
    COLUMNS, last_complete_week, parse_week, week_label)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """One CSV cell: numbers unformatted, ISO dates, formula-like text neutralised."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _cell(value.item())
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text  # a spreadsheet shows it as text instead of running it
    return text


def to_csv_text(df):
    """RFC 4180: comma-separated, CRLF line ends, quotes only where needed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(list(df.columns))
    for row in df.itertuples(index=False):
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def write_csv(df, path):
    """Write the report to *path* atomically (core.files.atomic_write: a
    temporary file in the same directory, fsync, rename, fsync the directory).
    The directory must exist (core.files.output_path)."""
    path = output_path(path, "weekly.csv")
    atomic_write(path, to_csv_text(df))
    return path


def newest_week(h):
    """The label of the ISO week (local time) of the history's newest run, or None."""
    newest = h.sql("SELECT max(epoch(started_at)) AS t FROM runs")["t"][0]
    if pd.isna(newest):
        return None
    day = datetime.fromtimestamp(float(newest)).date()
    return week_label(day - timedelta(days=day.weekday()))


def weekly(h, week=None):
    """``ottolytics report weekly``'s answer: (the report's frame for *week*, an
    ISO week such as ``"2026-W47"``, by default the last complete one; and
    None, or when the week had no runs one line that says so). For the default
    week the line names the week of the newest runs, or that there are none.
    Raises ValueError for a bad *week*.

    >>> df, hint = weekly(h)  # doctest: +SKIP
    >>> hint  # with the newest runs a week earlier
    'no runs in 2026-W48, the last complete week; the newest runs are in 2026-W47: ...'
    """
    df = h.weekly_report(week)
    if len(df):
        return df, None
    if week is not None:
        return df, "no runs that week"
    newest = newest_week(h)
    return df, (f"no runs in {week_label(last_complete_week())}, the last complete week"
                + (f"; the newest runs are in {newest}: pass --week {newest}" if newest
                   else "; the store has no runs"))
