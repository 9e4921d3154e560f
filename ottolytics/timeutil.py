"""Parsing human durations such as ``30d`` or ``90m`` into seconds."""

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
