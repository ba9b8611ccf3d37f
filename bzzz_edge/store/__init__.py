"""Durable local storage in LMDB. Does I/O."""

from ._env import Store

__all__ = ["Store"]
