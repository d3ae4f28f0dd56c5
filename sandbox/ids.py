"""Identifiers that look like the real products' ids, and are reproducible for a given seed.

Each kind of id is a counter passed through a bijection of the id space, so ids never collide,
look scattered like the real ones, and the same seed gives the same ids in the same order.
"""

from __future__ import annotations

import hashlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SALESFORCE_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SALESFORCE_POD = "5e"


def base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits))


def _multiplier(space: int) -> int:
    # Near the golden ratio of the space, and coprime with 62**k (odd, not a multiple of 31),
    # so n -> a*n + b (mod space) is a bijection that spreads consecutive counters apart.
    candidate = (space * 6180339887 // 10**10) | 1
    while candidate % 31 == 0:
        candidate += 2
    return candidate


def scramble(counter: int, *, width: int, salt: str) -> str:
    space = 62**width
    offset = int(hashlib.sha256(salt.encode()).hexdigest(), 16) % space
    return base62((_multiplier(space) * counter + offset) % space, width)


def salesforce_checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character Salesforce id case-insensitive."""
    suffix = ""
    for chunk in range(3):
        flags = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << position
        suffix += _SALESFORCE_SUFFIX[flags]
    return suffix


def salesforce_id(key_prefix: str, counter: int, *, seed: str) -> str:
    """An 18-character id like ``a0x5e000001AbCdEFG``: key prefix, pod, record, checksum."""
    id15 = f"{key_prefix}{_SALESFORCE_POD}000" + scramble(
        counter, width=7, salt=f"{seed}:{key_prefix}"
    )
    return id15 + salesforce_checksum(id15)


def stripe_id(prefix: str, counter: int, *, seed: str, width: int = 14) -> str:
    """An id like ``cus_NffrFeUfNV2Hib``."""
    return f"{prefix}_" + scramble(counter, width=width, salt=f"{seed}:{prefix}")
