"""Retention precedence: flags, then ottolytics.toml (project, then global), then
otto's keys in the ottofile, then the defaults."""

import pytest

from ottolytics.manage import retention


def test_defaults():
    p = retention.resolve("web")
    assert (p.keep_days, p.keep_last, p.keep_failed) == (30.0, 10, 60.0)
    assert set(p.sources.values()) == {"default"}


def test_each_layer_wins_over_the_ones_below(tmp_path):
    ottofile = tmp_path / "otto.yml"
    ottofile.write_text("otto:\n  retention:\n    keep_days: 5\n    keep_last: 4\n"
                        "    keep_failed: 6\ntasks: {}\n")
    config = {"keep_days": 7, "keep_last": 3, "projects": {"web": {"keep_days": 9}}}
    p = retention.resolve("web", {"keep_days": None, "keep_last": None, "keep_failed": None},
                          config, str(ottofile))
    assert (p.keep_days, p.keep_last, p.keep_failed) == (9.0, 3, 6.0)
    assert p.sources["keep_days"].endswith("[retention.projects.web]")
    assert p.sources["keep_last"].endswith("[retention]")
    assert p.sources["keep_failed"].startswith("ottofile")
    p = retention.resolve("web", {"keep_days": 1, "keep_last": 2}, config, str(ottofile))
    assert (p.keep_days, p.keep_last, p.keep_failed) == (1.0, 2, 6.0)
    assert p.sources["keep_days"] == "flag"
    other = retention.resolve("api", {}, config, None)  # no override, no ottofile
    assert (other.keep_days, other.keep_last, other.keep_failed) == (7.0, 3, 60.0)


def test_missing_or_broken_ottofile_falls_through(tmp_path):
    broken = tmp_path / "otto.yml"
    broken.write_text("otto: [unclosed\n")
    assert retention.resolve("web", ottofile=str(broken)).keep_days == 30.0
    assert retention.resolve("web", ottofile=str(tmp_path / "nope.yml")).keep_last == 10


def test_read_config(home):
    assert retention.read_config(home)[1] == {}
    (home / "ottolytics.toml").write_text("[retention]\nkeep_days = 14\n")
    path, config = retention.read_config(home)
    assert path.endswith("ottolytics.toml") and config == {"keep_days": 14}
    (home / "ottolytics.toml").write_text("retention = 3\n")
    with pytest.raises(retention.PolicyError, match="must be a table"):
        retention.read_config(home)


@pytest.mark.parametrize("key,value", [("keep_days", -1), ("keep_last", 2.5),
                                       ("keep_last", "ten"), ("keep_failed", True)])
def test_bad_values_name_their_source(key, value):
    with pytest.raises(retention.PolicyError, match=key) as err:
        retention.resolve("web", config={key: value}, config_path="ottolytics.toml")
    assert "ottolytics.toml [retention]" in str(err.value)


@pytest.mark.parametrize("key,value", [("keep_days", float("nan")), ("keep_failed", float("nan")),
                                       ("keep_last", float("nan")), ("keep_last", float("inf"))])
def test_nan_is_not_a_number_of_days(key, value):
    """A new user's report: keep_days = nan was taken (and planned more deletions,
    a NaN age comparing false)."""
    with pytest.raises(retention.PolicyError, match=key):
        retention.resolve("web", config={key: value}, config_path="ottolytics.toml")


def test_an_unknown_key_in_the_retention_table_is_an_error(home):
    """A new user's report: a misspelt key (keep_dayz) was ignored silently, and
    clean planned by the defaults: a typo deleted more than meant."""
    (home / "ottolytics.toml").write_text("[retention]\nkeep_dayz = 5\n")
    with pytest.raises(retention.PolicyError, match="keep_dayz") as err:
        retention.read_config(home)
    assert "keep_days" in str(err.value) and "\n" not in str(err.value)
    (home / "ottolytics.toml").write_text(
        "[retention]\nkeep_days = 5\n[retention.projects.web]\nkeep_lastt = 1\n")
    with pytest.raises(retention.PolicyError, match="keep_lastt"):
        retention.read_config(home)


@pytest.mark.parametrize("flag", ["--keep", "--keep-failed"])
def test_clean_refuses_a_nan_flag(flag, db, cli):
    out = cli("clean", "--dry-run", flag, "nan")
    assert out.returncode == 2 and len(out.stderr.decode().strip().splitlines()) == 1, out
