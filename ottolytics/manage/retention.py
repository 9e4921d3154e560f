"""Retention policies for ``clean``: how long runs are kept, per project.

Each setting comes from the first of these that sets it:

1. the command's flags (``--keep``, ``--keep-last``, ``--keep-failed``);
2. ``$OTTO_HOME/ottolytics.toml``: ``[retention]`` with ``keep_days``,
   ``keep_last`` and ``keep_failed``, and ``[retention.projects.<name>]`` overrides;
3. otto's own ``otto: retention:`` keys in the project's ottofile, when present;
4. the built-in defaults: 30 days, the last 10 runs, failed runs for 60 days.

Standard library only (tomllib); PyYAML is imported only when an ottofile is read.
"""

import os
import tomllib
from dataclasses import dataclass, field

from ottolytics.core.errors import ConfigError
from ottolytics.core.paths import otto_home

SETTINGS = ("keep_days", "keep_last", "keep_failed")
DEFAULTS = {"keep_days": 30.0, "keep_last": 10, "keep_failed": 60.0}
CONFIG_NAME = "ottolytics.toml"


class PolicyError(ConfigError):
    """A retention setting that can't be used; the message names its file and key."""


@dataclass(frozen=True)
class Policy:
    """Keep a run if it is among the newest *keep_last* of its project, younger
    than *keep_days*, or failed and younger than *keep_failed* days."""
    keep_days: float
    keep_last: int
    keep_failed: float
    sources: dict = field(default_factory=dict, compare=False)  # setting -> where it came from

    def describe(self):
        return (f"keep {self.keep_days:g} days, the last {self.keep_last}, "
                f"failed runs {self.keep_failed:g} days")


def _checked(value, key, where):
    integer = key == "keep_last"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value < 0 or (integer and (value == float("inf") or int(value) != value)):
        kind = "a whole number" if integer else "a number of days"
        raise PolicyError(f"{where}: {key} = {value!r}: expected {kind}, 0 or more")
    return int(value) if integer else float(value)


def read_config(home=None):
    """``$OTTO_HOME/ottolytics.toml`` as (path, its [retention] table), or (path, {})."""
    path = os.path.join(otto_home(home), CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return path, {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: unreadable ({exc}); fix or remove it") from None
    retention = data.get("retention", {})
    if not isinstance(retention, dict):
        raise PolicyError(f"{path}: [retention] must be a table")
    # a misspelt key would leave the default in force: clean deleting more than meant
    known = ", ".join(SETTINGS)
    for key in retention:
        if key not in SETTINGS and key != "projects":
            raise PolicyError(f"{path}: [retention] {key}: unknown key; the keys are {known} "
                              f"and [retention.projects.NAME] tables")
    projects = retention.get("projects", {})
    for name, table in (projects.items() if isinstance(projects, dict) else ()):
        for key in (table if isinstance(table, dict) else ()):
            if key not in SETTINGS:
                raise PolicyError(f"{path}: [retention.projects.{name}] {key}: unknown key; "
                                  f"the keys are {known}")
    return path, retention


def otto_retention(ottofile):
    """otto's ``otto: retention:`` keys from an ottofile, or {} when absent or unreadable."""
    if not ottofile or not os.path.isfile(ottofile):
        return {}
    try:
        import yaml
        with open(ottofile, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except Exception:  # unreadable or not YAML: a broken ottofile is otto's to report
        return {}
    otto = doc.get("otto") if isinstance(doc, dict) else None
    retention = otto.get("retention") if isinstance(otto, dict) else None
    return {k: v for k, v in retention.items() if k in SETTINGS} \
        if isinstance(retention, dict) else {}


def resolve(project, flags=None, config=None, ottofile=None, config_path=CONFIG_NAME):
    """The Policy for *project*: *flags* ({setting: value or None}), then the
    config's project table and [retention], then the ottofile's keys, then DEFAULTS."""
    flags = flags or {}
    config = config or {}
    projects = config.get("projects", {})
    own = projects.get(project, {}) if isinstance(projects, dict) else {}
    layers = [
        ("flag", {k: v for k, v in flags.items() if v is not None}),
        (f"{config_path} [retention.projects.{project}]", own if isinstance(own, dict) else {}),
        (f"{config_path} [retention]", {k: v for k, v in config.items() if k in SETTINGS}),
        (f"ottofile {ottofile}", otto_retention(ottofile)),
        ("default", DEFAULTS),
    ]
    values, sources = {}, {}
    for key in SETTINGS:
        for where, layer in layers:
            if key in layer:
                values[key] = _checked(layer[key], key, where)
                sources[key] = where
                break
    return Policy(sources=sources, **values)
