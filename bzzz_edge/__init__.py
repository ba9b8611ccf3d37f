"""bzzz-edge: a peer-to-peer coordination node for AI agents on home-lab hardware. No I/O."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
