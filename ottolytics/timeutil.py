"""Parsing human durations such as ``30d`` or ``90m`` into seconds, and the
``--since`` forms (a duration ago, a date, an ISO 8601 time) into unix seconds."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text) -> float:
    """``"30d"`` -> 2592000.0. Bare numbers are seconds. Raises ValueError."""
    if isinstance(text, (int, float)):
        return float(text)
    raw = str(text).strip().lower()
    if not raw:
        raise ValueError("empty duration")
    unit = raw[-1]
    if unit in _UNITS:
        number, factor = raw[:-1], _UNITS[unit]
    else:
        number, factor = raw, 1
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 30m, 24h, 7d or 2w") from None
    if value < 0:
        raise ValueError(f"{text!r}: a duration cannot be negative")
    return value * factor


def parse_since(text, now=None) -> float:
    """A point in time as unix seconds, from what ``--since`` (and the API's
    ``since``) accept: a duration ago (``7d``, ``12h``, bare seconds), a date
    (``2026-11-01``) or an ISO 8601 time (``2026-11-01T08:00``, ``…Z``,
    ``…+01:00``). A date or time without a zone is UTC. Raises ValueError."""
    import time
    raw = str(text).strip()
    try:
        return (time.time() if now is None else now) - parse_duration(raw)
    except ValueError:
        pass
    from datetime import datetime, timezone
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "Zz" and raw
                                       else raw)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (7d, 12h, 90m) nor a date "
                         "(2026-11-01) or ISO time (2026-11-01T08:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def since_is_duration(text) -> bool:
    """True when *text* is a duration (``7d``) rather than a date or time."""
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True
