"""Odd msgpack values for structured inputs: boundary ints, wrong types, nested containers."""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack

__all__ = ["odd_value", "packb", "replace_somewhere"]

_INTS = (0, 1, -1, 2**31, 2**32, 2**63 - 1, -(2**63), 2**64 - 1, 255, 65535, 2**53)
_FLOATS = (0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e308)
_STRS = ("", "swim", "gossip", "\x00", "é" * 40, "a" * 300, "\ud7ff", "bzzz/coordination/v1")


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    """A value of a random msgpack type, biased towards limits and wrong types."""
    kind = rng.randrange(11 if depth < 3 else 8)
    if kind == 0:
        return rng.choice(_INTS)
    if kind == 1:
        return rng.randrange(-(2**63), 2**64)
    if kind == 2:
        return rng.choice(_FLOATS)
    if kind == 3:
        return rng.choice(_STRS)
    if kind == 4:
        return rng.randbytes(rng.choice((0, 1, 16, 31, 32, 33, 64, 65, 300)))
    if kind == 5:
        return rng.choice((None, True, False))
    if kind == 6:
        if rng.random() < 0.3:  # the one ext type msgpack reserves and decodes itself
            return msgpack.Timestamp(rng.randrange(2**34), rng.randrange(10**9))
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(9)))
    if kind == 7:
        return rng.randrange(2**16)
    if kind == 8:
        return [odd_value(rng, depth + 1) for _ in range(rng.choice((0, 1, 2, 5, 9)))]
    if kind == 9:
        return {odd_value(rng, 3): odd_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [rng.choice(_INTS), odd_value(rng, depth + 1)]


def replace_somewhere(rng: random.Random, tree: Any) -> Any:
    """A copy of ``tree`` (lists and dicts) with one node, at any depth, replaced or dropped."""
    if isinstance(tree, list) and tree and rng.random() < 0.8:
        i = rng.randrange(len(tree))
        out = list(tree)
        roll = rng.random()
        if roll < 0.1:
            del out[i]
        elif roll < 0.2:
            out.insert(i, odd_value(rng))
        else:
            out[i] = replace_somewhere(rng, tree[i])
        return out
    if isinstance(tree, dict) and tree and rng.random() < 0.8:
        out_map = dict(tree)
        key = rng.choice(list(out_map))
        if rng.random() < 0.3:
            out_map[odd_value(rng, 3)] = out_map.pop(key)
        else:
            out_map[key] = replace_somewhere(rng, out_map[key])
        return out_map
    return odd_value(rng)


def packb(value: Any) -> bytes:
    """msgpack bytes of ``value``; map keys msgpack cannot pack make the map a list instead."""
    try:
        packed = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        packed = msgpack.packb(repr(value), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed
