"""Failure signatures: a stderr tail with what varies between occurrences of one
failure taken out (``normalize``), its hash (``signature``) and the line that
names it (``message``). One definition, used by ``History.failures`` and by the
columnar mirror, which stores each tail's signature once when it copies it
(``analyze/sources/mirror.py``). Standard library only."""

__all__ = ["normalize", "signature", "message", "signed", "SIGNATURE_LINES"]

import functools
import hashlib
import re


_NORMALIZE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                r"(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"(?:/private)?(?:/tmp|/var/tmp|/var/folders|/dev/shm)(?:/[^\s'\":,;)\]]*)?"),
     "<tmp>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<id>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"[ \t]+"), " "),
]
_DIGIT = re.compile(r"\d").search
# What each pattern above cannot match without (None: always tried): a pattern
# is skipped when the text, as it is by then, lacks it. No replacement adds
# any of these, so the result is the same, at a fraction of the cost.
_NEEDS = [
    lambda t: "-" in t and ":" in t,
    lambda t: ":" in t,
    lambda t: "/tmp" in t or "/var/" in t or "/dev/shm" in t,
    lambda t: "-" in t,
    lambda t: "0x" in t,
    _DIGIT,
    _DIGIT,
    lambda t: "  " in t or "\t" in t,  # one space for one space changes nothing
]
SIGNATURE_LINES = 10


def normalize(text):
    """A stderr tail with what varies between occurrences of one failure taken out:
    timestamps, temporary paths, uuids, hex ids and numbers. Only its last
    SIGNATURE_LINES non-empty lines count."""
    if not isinstance(text, str) or not text:  # None, NaN or pd.NA (pandas 2 and 3)
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    result = "\n".join(lines[-SIGNATURE_LINES:])
    for (pattern, replacement), needs in zip(_NORMALIZE, _NEEDS):
        if needs(result):
            result = pattern.sub(replacement, result)
    return result


def signature(text):
    """12 hex digits identifying a failure: the hash of its normalized stderr tail."""
    return hashlib.sha1(normalize(text).encode()).hexdigest()[:12]


_ERROR_LINE = re.compile(r"error|exception|failed|fatal|panic|traceback|denied|timed? ?out",
                         re.IGNORECASE)
_SUMMARY_LINE = re.compile(r"^[=\-_*#]{3,}.*[=\-_*#]{3,}$")


def message(text):
    """The line of a stderr tail that names the failure: the last one that reads
    like an error, skipping summary banners such as pytest's '=== 1 failed ===';
    else the last line."""
    if not isinstance(text, str):  # None, NaN or pd.NA: no tail, no message
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    named = [line for line in lines if _ERROR_LINE.search(line)
             and not _SUMMARY_LINE.match(line)]
    return (named or lines)[-1][:300]


@functools.lru_cache(maxsize=1 << 17)
def signed(text):
    """(signature or None, message) of one stderr tail."""
    return (signature(text) if isinstance(text, str) and text else None), message(text)
