"""Ids that sort by creation time, shared by the server and the training capture.

Job ids lead every index of `predictions`; a random id puts a new job's rows in the middle of
those B-trees, whose pages then split half full (PostgreSQL's indexes grew about 1.8x for the
same rows). With the time first, the job being written sorts last and its rows append.
"""

import os
import time

_MS_BITS = 48
_RAND_BITS = 74


def time_ordered_hex() -> str:
    """32 hex digits laid out as a UUID version 7 (RFC 9562): Unix milliseconds, then random."""
    ms = time.time_ns() // 1_000_000 & ((1 << _MS_BITS) - 1)
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << _RAND_BITS) - 1)
    value = (
        ms << 80
        | 0x7 << 76  # version
        | (rand >> 62) << 64  # 12 random bits
        | 0b10 << 62  # variant
        | rand & ((1 << 62) - 1)
    )
    return f"{value:032x}"
