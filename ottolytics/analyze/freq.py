"""``freq``: the periods the analytics group by, named as pandas names them.

One definition for every method that takes ``freq`` (``success_rate``,
``duration_trend``, ``disk_growth`` and the plots). Time is UTC throughout.

What a period is:

- a period is one bucket of pandas' ``to_period``/``resample`` with the same
  alias, and its label (the ``period`` column) is the **start** of the bucket, a
  tz-aware UTC timestamp, whatever pandas' own default label is (``resample("W")``
  and ``resample("ME")`` label with the end; ottolytics always labels with the start);
- ``min``, ``h`` (``H``), ``D``: minutes, hours, days;
- ``W`` is ``W-SUN``: weeks **ending** on Sunday, so Monday to Sunday (ISO weeks).
  ``W-MON`` … ``W-SAT`` are weeks ending on that day, as in pandas: ``W-FRI`` runs
  Saturday to Friday and is labelled with the Saturday;
- ``MS``, ``ME``, ``M``: calendar months (the same buckets; the label is the 1st);
- ``QS``, ``QE``, ``Q``: calendar quarters (January, April, July, October);
- ``YS``, ``YE``, ``Y``: calendar years;
- the words ``minute``, ``hour``, ``day``, ``week``, ``month``, ``quarter``, ``year``
  mean the same as ``min``, ``h``, ``D``, ``W``, ``MS``, ``QS``, ``YS``;
- ``None``: no period, one row per group for the whole history.

Multiples (``2W``, ``15min``) and other anchors (``QS-FEB``, business days) are not
offered: a ``ValueError`` says what is.
"""

from __future__ import annotations

__all__ = ["Freq", "CHOICES", "WEEK_ENDS", "parse_freq", "period_sql", "epoch_period_sql"]

from dataclasses import dataclass

#: The aliases of ``W-XXX``: the day a week ends on.
WEEK_ENDS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

_UNITS = {
    "min": "minute", "minute": "minute",
    "h": "hour", "H": "hour", "hour": "hour",
    "D": "day", "day": "day",
    "W": "week", "week": "week",
    "MS": "month", "ME": "month", "M": "month", "month": "month",
    "QS": "quarter", "QE": "quarter", "Q": "quarter", "quarter": "quarter",
    "YS": "year", "YE": "year", "Y": "year", "year": "year",
}

#: Fixed-size units as (seconds, offset from the epoch of a bucket start).
_SIZES = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_THURSDAY = 3   # 1970-01-01, the epoch, was a Thursday (Monday is 0)

CHOICES = "min, h, D, W or W-MON..W-SUN, MS/ME/M, QS/QE/Q, YS/YE/Y, or None"


@dataclass(frozen=True)
class Freq:
    """A parsed ``freq``: the unit, and for weeks the day they start on (0 = Monday)."""

    unit: str
    week_start: int = 0


def parse_freq(freq: str | None) -> Freq | None:
    """The period *freq* names, or None for no period.

    Parameters
    ----------
    freq : str or None
        A pandas alias (``D``, ``W``, ``W-MON``, ``MS``, ``ME``, ``h`` ...) or a word
        (``day``, ``week`` ...); see the module's docstring for each one's meaning.

    Returns
    -------
    Freq or None

    Raises
    ------
    ValueError
        One line naming the aliases offered, when *freq* is not one of them.

    Example
    -------
    >>> parse_freq("W-FRI")
    Freq(unit='week', week_start=5)
    """
    if freq is None:
        return None
    if isinstance(freq, str):
        if freq in _UNITS:
            return Freq(_UNITS[freq])
        head, _, end = freq.partition("-")
        if head == "W" and end.upper() in WEEK_ENDS:
            # A week ending on day d starts the day after it.
            return Freq("week", (WEEK_ENDS.index(end.upper()) + 1) % 7)
    raise ValueError(f"freq {freq!r}: use one of {CHOICES} "
                     "(one period of that length, labelled with its start, in UTC)")


def period_sql(freq: str | None, column: str = "started_at") -> str | None:
    """SQL for the start of *column*'s period (a TIMESTAMPTZ in a UTC session),
    or None when *freq* is None."""
    f = parse_freq(freq)
    if f is None:
        return None
    if f.unit == "week" and f.week_start:
        shift = f"INTERVAL {f.week_start} DAY"
        return f"(date_trunc('week', {column} - {shift}) + {shift})"
    return f"date_trunc('{f.unit}', {column})"


def epoch_period_sql(freq: str | None, seconds: str = "started_s") -> str | None:
    """SQL for the start of the period as unix seconds, by arithmetic on a raw
    seconds column: cheaper per row than a time-zone-aware date_trunc. None when
    *freq* is None."""
    f = parse_freq(freq)
    if f is None:
        return None
    if f.unit not in _SIZES:
        return (f"epoch(date_trunc('{f.unit}', "
                f"make_timestamp(CAST({seconds} * 1000000 AS BIGINT))))")
    size = _SIZES[f.unit]
    # Weeks start on a weekday: the first one after the epoch is the offset.
    offset = (f.week_start - _THURSDAY) % 7 * 86400 if f.unit == "week" else 0
    return f"floor(({seconds} - {offset}) / {size}) * {size} + {offset}"
