"""freq means what it means in pandas: every alias ottolytics takes puts each
timestamp in the bucket pandas' own to_period and resample put it in, and labels
it with the bucket's start. Both SQL forms (date_trunc on a timestamp, arithmetic
on unix seconds) are checked."""

from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from ottolytics.analyze.freq import CHOICES, WEEK_ENDS, epoch_period_sql, parse_freq, period_sql

# ottolytics's alias -> (pandas' period alias, pandas' resample alias), both
# spelled as pandas 2.2+ and 3 accept them.
PANDAS = {"min": ("min", "min"), "minute": ("min", "min"),
          "h": ("h", "h"), "H": ("h", "h"), "hour": ("h", "h"),
          "D": ("D", "D"), "day": ("D", "D"),
          "W": ("W", "W"), "week": ("W", "W"),
          "MS": ("M", "MS"), "ME": ("M", "ME"), "M": ("M", "ME"), "month": ("M", "MS"),
          "QS": ("Q", "QS"), "QE": ("Q", "QE"), "Q": ("Q", "QE"), "quarter": ("Q", "QS"),
          "YS": ("Y", "YS"), "YE": ("Y", "YE"), "Y": ("Y", "YE"), "year": ("Y", "YS")}
PANDAS.update({f"W-{d}": (f"W-{d}", f"W-{d}") for d in WEEK_ENDS})


def _seconds():
    """Random instants over nine years, and the edges: every midnight of seven
    weeks around a year's end (and a leap day), one second either side of it."""
    rng = np.random.default_rng(15)
    start, end = (datetime(y, 1, 1, tzinfo=timezone.utc).timestamp() for y in (2019, 2028))
    random = rng.uniform(start, end, 3000).round(3)
    edges = []
    for first in ("2025-12-01", "2028-02-20"):
        for day in pd.date_range(first, periods=49, freq="D", tz="UTC"):
            t = day.timestamp()
            edges += [t - 1, t, t + 1, t + 43200]
    return np.unique(np.concatenate([random, edges]))


SECONDS = _seconds()


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t AS SELECT unnest($1::DOUBLE[]) AS started_s", [SECONDS.tolist()])
    yield con
    con.close()


def _ours(con, freq):
    """Each instant's period start by both SQL forms, as naive UTC datetimes."""
    rows = con.execute(f"SELECT epoch({period_sql(freq, 'to_timestamp(started_s)')}), "
                       f"{epoch_period_sql(freq)} FROM t ORDER BY started_s").fetchall()
    return (pd.DatetimeIndex(pd.to_datetime([r[i] for r in rows], unit="s")) for i in (0, 1))


@pytest.mark.parametrize("freq", sorted(PANDAS))
def test_buckets_and_labels_are_pandas(con, freq):
    period_alias, resample_alias = PANDAS[freq]
    trunc, arith = _ours(con, freq)
    assert (trunc == arith).all()
    naive = pd.Series(pd.to_datetime(SECONDS, unit="s"))
    # to_period: the same bucket, and its start is our label.
    starts = pd.DatetimeIndex(naive.dt.to_period(period_alias).dt.start_time)
    assert (trunc == starts).all(), freq
    # resample: the same partition of the instants (whatever label pandas gives).
    position = pd.Series(np.arange(len(naive)), index=pd.DatetimeIndex(naive))
    spans = position.resample(resample_alias).agg(["min", "max"]).dropna()
    theirs = {(int(a), int(b)) for a, b in zip(spans["min"], spans["max"])}
    ours = pd.Series(np.arange(len(trunc))).groupby(trunc.values).agg(["min", "max"])
    assert {(int(a), int(b)) for a, b in zip(ours["min"], ours["max"])} == theirs, freq


def test_weeks_end_on_the_day_named():
    assert parse_freq("W") == parse_freq("W-SUN") == parse_freq("week")
    assert parse_freq("W-SUN").week_start == 0          # Monday to Sunday
    assert parse_freq("W-FRI").week_start == 5          # Saturday to Friday
    assert parse_freq("W-SAT").week_start == 6
    assert parse_freq(None) is None and period_sql(None) is None


@pytest.mark.parametrize("bad", ["fortnight", "2W", "15min", "W-XYZ", "QS-FEB", "B", "", 7])
def test_anything_else_is_one_clear_line(bad):
    with pytest.raises(ValueError) as info:
        parse_freq(bad)
    message = str(info.value)
    assert "\n" not in message and repr(bad) in message and CHOICES in message
