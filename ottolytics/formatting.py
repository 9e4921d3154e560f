"""Small, dependency-free formatting shared by the terminal commands."""

import time

STATUS_SYMBOLS = {"success": "✓", "failed": "✗", "running": "⋯", "pending": "⋯",
                  "interrupted": "○", "skipped": "–"}


def iso_utc(ts):
    """Unix seconds -> ISO 8601 in UTC (``2026-11-22T04:10:00.123456+00:00``), or None."""
    if ts is None:
        return None
    from datetime import datetime, timezone  # not at import: the quick commands' budget
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def shorten(text, width):
    """*text* in at most *width* characters: cut after the last whole word that
    fits, with an ellipsis (a single word longer than that is cut inside)."""
    text = "" if text is None else " ".join(str(text).split())
    if len(text) <= width:
        return text
    head = text[:width - 1]
    cut = head.rfind(" ", 0, width)
    if text[width - 1] == " ":
        cut = width - 1
    word = head[:cut].rstrip(" -:;,") if cut > 0 else ""
    return (word or head) + "…"


def local_time(ts):
    """Unix seconds -> local time with its zone, for people (``2026-11-22 05:10:00 CET``)."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def duration(seconds):
    """1.234 -> '1.2s', 75 -> '1m15s', 3725 -> '1h02m'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(headers, rows):
    """A plain, aligned text table (no colour), one string."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
