"""Small, dependency-free formatting shared by the terminal commands."""

import os
import sys
import time

STATUS_SYMBOLS = {"success": "✓", "failed": "✗", "running": "⋯", "pending": "⋯",
                  "interrupted": "○", "skipped": "–"}


_ESCAPES = None


def _escape_table():
    """Code point -> visible escape, for every character a terminal could act on:
    C0 controls and DEL, C1 controls (\x9b is a one-byte CSI), bidi overrides,
    and surrogates (bytes kept by surrogateescape, shown as the byte)."""
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C):
        table[c] = f"\\u{c:04x}"
    for c in range(0xD800, 0xE000):
        table[c] = f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"
    return table


def printable(value):
    """*value* safe to print to a terminal: control characters escaped (``\\x1b``,
    ``\\n``), so text from the store never moves the cursor, sets a title or
    clears the screen. Non-strings are returned unchanged; JSON output does not
    use this (it keeps exact values)."""
    global _ESCAPES
    if not isinstance(value, str) or value.isprintable():
        return value
    if _ESCAPES is None:
        _ESCAPES = _escape_table()
    return value.translate(_ESCAPES)


def iso_utc(ts):
    """Unix seconds (or a datetime; naive is taken as UTC) -> ISO 8601 in UTC with
    ``Z``, the one timestamp format of all JSON output: ``2026-11-22T04:10:00Z``,
    with the fraction only when there is one, trailing zeros dropped
    (``2026-11-22T04:10:00.25Z``, at most microseconds). None (or NaN) -> None."""
    from datetime import datetime, timezone  # not at import: the quick commands' budget
    if ts is None:
        return None
    if isinstance(ts, datetime):
        dt = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(
            timezone.utc)
    else:
        if ts != ts:  # NaN
            return None
        dt = datetime.fromtimestamp(ts, timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


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
    cells = [[printable(str(c)) for c in headers]] + [
        ["" if c is None else printable(str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def human_bytes(n):
    """1536 -> '1.5 KiB'; None -> '-'."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def fancy(stream=None):
    """True when *stream* (stdout) is a terminal and NO_COLOR is not set."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
