"""How every command that prints rows prints them: ``--json`` (one JSON document),
``--jsonl`` (one JSON object per line), a rich table on a terminal, or plain
aligned text (piped, ``NO_COLOR``, or ``--plain``).

Standard library only, and nothing imported before it is needed: the quick
commands (``history``, ``list``, ``info``) print through this module within their
start-up budget. rich is imported only for a table on a terminal
(cli/terminal.py). The rules of all JSON output: times are ISO 8601 in UTC with
``Z`` (formatting.iso_utc), NaN and infinities are null, and strings keep their
exact value (escaping control characters is for the terminal only).
"""

import math
import sys


def add_output_flags(parser, jsonl=True, plain=True):
    """--json, --jsonl and (for a command that prints tables) --plain on a
    command's argparse parser."""
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    if jsonl:
        parser.add_argument("--jsonl", action="store_true",
                            help="print one JSON object per line")
    if plain:
        parser.add_argument("--plain", action="store_true",
                            help="plain aligned text even on a terminal (no rich table)")


def json_value(value):
    """*value* with what JSON cannot hold made JSON: NaN and infinities -> None,
    datetimes -> ISO UTC; dicts, lists and tuples walked."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if hasattr(value, "isoformat") and hasattr(value, "tzinfo"):  # a datetime
        from ottolytics.core.formatting import iso_utc
        return iso_utc(value)
    return value


def _dumps(value, indent=None):
    import json
    return json.dumps(json_value(value), indent=indent, default=str, allow_nan=False)


def print_json(doc):
    """--json: *doc* as one indented JSON document."""
    print(_dumps(doc, indent=2))


def print_jsonl(records):
    """--jsonl: each record as one JSON object on its own line."""
    for r in records:
        print(_dumps(r))


def print_records(records, jsonl):
    """*records* as --jsonl prints them, else as one --json document."""
    if jsonl:
        print_jsonl(records)
    else:
        print_json(records)


def iso_fields(record, *names):
    """*record* with the named unix-second fields as ISO UTC text (in place)."""
    from ottolytics.core.formatting import iso_utc
    for name in names:
        record[name] = iso_utc(record[name])
    return record


def frame_records(df):
    """A pandas frame as JSON-ready records: timestamps as formatting.iso_utc writes
    them (the one format of all JSON output), nulls as None."""
    import json
    import pandas as pd
    from ottolytics.core.formatting import iso_utc
    df = df.copy()
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            df[col] = pd.Series([None if pd.isna(t) else iso_utc(t)
                                 for t in df[col]], index=df.index, dtype=object)
    return json.loads(df.to_json(orient="records", date_format="iso", date_unit="us"))


def print_table(headers, rows, title=None, right=(), plain=False):
    """A table: rich on a terminal (cli/terminal.py), else, or with *plain*, aligned
    text. Cells are printed with control characters escaped either way."""
    from ottolytics.core.formatting import fancy
    if plain or not fancy():
        from ottolytics.core.formatting import printable, table
        if title:
            print(printable(title))
        print(table(headers, rows))
        return
    from ottolytics.cli.terminal import print_table as rich_table
    rich_table(headers, rows, title=title, right=right)


def wants_json(args):
    """True when *args* asked for --json or --jsonl."""
    return bool(getattr(args, "json", False) or getattr(args, "jsonl", False))


def is_terminal(stream=None):
    """True when *stream* (stdout) is a terminal."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
