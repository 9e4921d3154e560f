"""Reading the timestamps other tools write: unix seconds or milliseconds, or ISO 8601."""

from datetime import datetime, timezone


def to_unix(value):
    """Unix seconds (float) from a number or an ISO 8601 string; None if unreadable.

    Numbers above 1e11 are taken as milliseconds. An ISO string without a zone
    is taken as UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return to_unix(number)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
