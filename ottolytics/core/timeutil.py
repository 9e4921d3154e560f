"""Parsing human durations such as ``30d`` or ``90m`` into seconds, and the
``--since`` forms (unix seconds, a duration ago, a date, an ISO 8601 time) into
unix seconds. to_unix (over parse_since) is the one reader of a point in time:
``--since``, ``since=``/``until=`` of open() and History, the MCP server's
``since``, stats and the report all go through it."""

import math

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = 200 * 365 * 86400      # longer than any history; beyond is a typo
MAX_UNIX = 253402300799.0             # 9999-12-31T23:59:59Z
_FORMS = ("use unix seconds (1795000000), a duration with a unit (90s, 30m, 12h, 7d, "
          "2w), a date (2026-11-01) or an ISO time (2026-11-01T08:00Z)")


def _number(text):
    """A finite float from *text*, else None (``inf``, ``nan``, words)."""
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def parse_duration(text) -> float:
    """``"30d"`` -> 2592000.0. Bare numbers are seconds. Raises ValueError for
    anything that is not a finite, non-negative, sane duration."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, raw = float(text), text
    else:
        raw = str(text).strip().lower()
        if not raw:
            raise ValueError("empty duration; use e.g. 90s, 30m, 24h, 7d or 2w")
        if raw[-1] in _UNITS:
            number, factor = _number(raw[:-1]), _UNITS[raw[-1]]
        else:
            number, factor = _number(raw), 1
        if number is None:
            raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 30m, 24h, 7d or 2w")
        value = number * factor
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a duration; use e.g. 90s, 30m, 24h, 7d or 2w")
    if value < 0:
        raise ValueError(f"{raw!r}: a duration cannot be negative")
    if value > MAX_DURATION:
        raise ValueError(f"{raw!r}: a duration of more than 200 years is not plausible")
    return value


def check_unix(value, text=None) -> float:
    """*value* as unix seconds, or ValueError when it is not finite, negative or
    beyond the year 9999."""
    shown = value if text is None else text
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{shown!r} is not a time; {_FORMS}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_UNIX:
        raise ValueError(f"{shown!r} is not a plausible time (unix seconds from 0 to "
                         f"{MAX_UNIX:.0f}); {_FORMS}")
    return value


def parse_since(text, now=None) -> float:
    """A point in time as unix seconds, from what ``--since`` (and the API's
    ``since``) accept: unix seconds (a bare number: ``1795000000``), a duration
    ago with a unit (``90s``, ``30m``, ``12h``, ``7d``, ``2w``), a date
    (``2026-11-01``) or an ISO 8601 time (``2026-11-01T08:00``, ``…Z``,
    ``…+01:00``). A date or time without a zone is UTC. Raises ValueError, with
    one line, for anything else (including ``inf``, ``nan`` and negative numbers)."""
    import time
    raw = str(text).strip()
    if not raw:
        raise ValueError(f"{text!r} is empty; {_FORMS}")
    try:
        float(raw)
    except (ValueError, OverflowError):
        pass
    else:                                   # a bare number, finite or not
        return check_unix(raw, text)
    if raw[-1].lower() in _UNITS and _looks_numeric(raw[:-1]):
        try:
            ago = parse_duration(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}; {_FORMS}") from None
        return (time.time() if now is None else now) - ago
    from datetime import datetime, timezone
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "Zz" else raw)
    except ValueError:
        raise ValueError(f"{text!r} is not a time; {_FORMS}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return check_unix(value.timestamp(), text)


def to_unix(value, now=None):
    """A point in time as unix seconds, or None for None: unix seconds (a
    number, or a bare number as text), a duration ago (``"30d"``), a date or an
    ISO 8601 time (as text, or a ``datetime``/``date``, pandas' Timestamp
    included). A time without a zone is UTC, a date its UTC midnight. Raises
    ValueError for inf, nan, negative or absurd values and anything else."""
    from datetime import date, datetime, timezone
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time; {_FORMS}")
    if isinstance(value, (int, float)):
        return check_unix(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time; {_FORMS}")
    return parse_since(value, now)


def _looks_numeric(text):
    try:
        float(text)
    except (ValueError, OverflowError):
        return False
    return True


def since_is_duration(text) -> bool:
    """True when *text* is a duration with a unit (``7d``) rather than unix
    seconds, a date or a time."""
    raw = str(text).strip()
    if not raw or raw[-1].lower() not in _UNITS or not _looks_numeric(raw[:-1]):
        return False
    try:
        parse_duration(raw)
    except ValueError:
        return False
    return True
