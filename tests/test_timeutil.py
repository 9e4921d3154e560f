"""--since and since=: one parser (timeutil.parse_since) for the CLI, the Python API
and the MCP server. A bare number is unix seconds; a duration needs a unit."""

import math

import pytest

from ottolytics.core.timeutil import parse_duration, parse_since

NOW = 1_800_000_000.0


def test_bare_numbers_are_unix_seconds_and_durations_need_a_unit():
    assert parse_since("1795000000", now=NOW) == 1_795_000_000.0
    assert parse_since("1795000000.5", now=NOW) == 1_795_000_000.5
    assert parse_since("0", now=NOW) == 0.0
    assert parse_since("90s", now=NOW) == NOW - 90
    assert parse_since("30m", now=NOW) == NOW - 1800
    assert parse_since("12h", now=NOW) == NOW - 12 * 3600
    assert parse_since("7d", now=NOW) == NOW - 7 * 86400
    assert parse_since("2w", now=NOW) == NOW - 14 * 86400
    assert parse_since("2026-11-01T00:00Z", now=NOW) == 1_793_491_200.0


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan", "NaN", "infinity", "-1", "-5d",
                                 "infd", "nand", "1e300", "1e300d", "99999999999999",
                                 "", "  ", "soon"])
def test_nonsense_is_refused_with_one_line(bad):
    with pytest.raises(ValueError) as exc:
        parse_since(bad, now=NOW)
    assert "\n" not in str(exc.value) and str(exc.value)


@pytest.mark.parametrize("bad", ["inf", "nan", "-1", "1e400", "infd"])
def test_durations_refuse_non_finite_and_negative(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_python_api_numbers_go_through_the_same_checks(db):
    from ottolytics.analyze.history import to_unix
    assert to_unix(1_795_000_000) == 1_795_000_000.0
    assert to_unix("1795000000") == 1_795_000_000.0
    for bad in (math.inf, -math.inf, math.nan, -1.0, 1e300):
        with pytest.raises(ValueError):
            to_unix(bad)


def test_one_reader_for_every_form_of_a_point_in_time():
    """timeutil.to_unix is the one reader behind open(), the CLI, the MCP server,
    stats and the report: text as --since takes it, numbers, datetimes and dates."""
    from datetime import date, datetime, timedelta, timezone
    from ottolytics.core.timeutil import to_unix
    cut = 1_793_491_200.0                       # 2026-11-01T00:00Z
    assert to_unix(None) is None
    assert to_unix(cut) == to_unix(int(cut)) == to_unix("1793491200") == cut
    assert to_unix("2026-11-01") == to_unix("2026-11-01T00:00Z") == cut
    assert to_unix("2026-11-01T01:00+01:00") == cut
    assert to_unix(datetime(2026, 11, 1)) == cut                  # naive is UTC
    assert to_unix(datetime(2026, 11, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == cut
    assert to_unix(date(2026, 11, 1)) == cut                      # a date is its UTC midnight
    assert to_unix("7d", now=NOW) == NOW - 7 * 86400
    for bad in (True, "soon", math.nan, object()):
        with pytest.raises(ValueError):
            to_unix(bad)


def test_pandas_timestamps_read_as_datetimes():
    import pandas as pd
    from ottolytics.analyze.history import to_unix
    assert to_unix(pd.Timestamp("2026-11-01")) == 1_793_491_200.0
    assert to_unix(pd.Timestamp("2026-11-01T01:00+01:00")) == 1_793_491_200.0
