"""Durable local storage in LMDB."""

from ._env import Store

__all__ = ["Store"]
