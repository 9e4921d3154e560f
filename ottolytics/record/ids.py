"""Run ids: short, unique across hosts, and sortable by creation time.

48 bits of milliseconds plus 32 random bits, in Crockford base32 (16
characters). Made on the client, so a run has its id even while the store is
unreachable and its events are spooled.
"""

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_run_id(now=None) -> str:
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (ms << 32) | int.from_bytes(os.urandom(4), "big")
    chars = []
    for _ in range(16):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_token() -> str:
    """A spool-local reference for a task started while spooling."""
    return os.urandom(8).hex()
