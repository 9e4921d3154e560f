"""Values read from a store's rows. Rows are untrusted (the public Recorder API,
other tools' databases, hand edits): SQLite keeps whatever it is given, so a
number column may hold text, and a time may lie past any date a reader can
show. The one rule for numbers and times, used by the quick commands (history,
list, info) and the columnar mirror. Standard library only."""

__all__ = ["number", "seconds", "no_nul", "FIRST_SECOND", "LAST_SECOND"]

FIRST_SECOND = -62_135_596_800  # 0001-01-01T00:00:00Z
LAST_SECOND = 253_402_300_799   # 9999-12-31T23:59:59Z: the last second any reader can show


def number(v, integer=False):
    """*v* (an int, a float, text or bytes) as a number: a number as itself, text
    that is a number as that number, anything else None. With *integer*, an
    integer, exact (not through a float), None outside int64's range."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, bool):
        v = int(v)
    if integer:
        if isinstance(v, int):
            return v if -2 ** 63 <= v < 2 ** 63 else None
        if isinstance(v, str):
            try:
                return number(int(v.strip()), True)
            except ValueError:
                pass  # '12.0', '1e3': through a float below
    try:
        value = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    if not integer:
        return value
    return int(value) if value == value and -2.0 ** 63 <= value < 2.0 ** 63 else None


def seconds(v):
    """*v* as unix seconds a reader can show (FIRST_SECOND to LAST_SECOND), else
    None: text that is no number, NaN, 1e20."""
    value = number(v)
    return value if value is not None and FIRST_SECOND <= value <= LAST_SECOND else None


def no_nul(arg, value):
    """Raise ValueError, one line naming *arg*, when the name *value* holds a NUL
    character: no project, task or run id holds one (and a NUL would end the SQL
    literal a filter becomes)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{arg}={value!r}: a name holds no NUL character; remove it")
