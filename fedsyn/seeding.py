"""Derived seeds: every random draw in fedsyn comes from the config's seed through this function."""

from __future__ import annotations

import hashlib


def derive_seed(base: int, *parts: object) -> int:
    """A 63-bit seed that is a pure function of ``base`` and the labels in ``parts``.

    Different labels give independent streams (``derive_seed(s, "client", 3)`` vs
    ``derive_seed(s, "init")``), so adding a new random draw never shifts an existing one.
    """
    text = "/".join([str(int(base))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
