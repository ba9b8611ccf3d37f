"""UCXL addresses: parsing, canonical form, matching, temporal resolution, content keys. No I/O.

The grammar and rules are in shared/ucxl/SPEC.md. The implementation is the compiled parser
(``bzzz_edge._compiled.ucxl``) when it was built, else its pure-Python twin
(``bzzz_edge.ucxl._pure``); ``BZZZ_EDGE_PURE=1`` forces the twin. Both behave identically,
and both raise the exception classes defined once in ``bzzz_edge.ucxl._errors``.

    >>> addr = parse("UCXL://GPT4:Architect@Chorus:Design/~~/src/Main.go")
    >>> str(addr)
    'ucxl://gpt4:architect@chorus:design/~~1/src/Main.go'
    >>> addr.resolve(5)
    4
"""

from __future__ import annotations

from bzzz_edge import _native
from bzzz_edge.ucxl._errors import NoSuchVersion, UCXLError

__all__ = ["Address", "NoSuchVersion", "UCXLError", "parse"]

_impl = _native.load("ucxl")

Address = _impl.Address
parse = _impl.parse

