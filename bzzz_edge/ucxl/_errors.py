"""UCXL exceptions and the wording of parse errors, shared by both parsers. No I/O.

Defined once, in pure Python, so ``except UCXLError`` works whichever parser is loaded, and so
the compiled and the pure parser cannot drift apart in their messages: both report a failure
as (position, one of the ``EXPECT_*`` phrases below) and let :func:`parse_error` word it.
"""

from __future__ import annotations

from bzzz_edge.errors import BzzzError

__all__ = ["NoSuchVersion", "UCXLError"]


class UCXLError(BzzzError, ValueError):
    """A malformed UCXL address, or one that cannot be used where it was given.

    Attributes:
        position: 0-based index of the offending character (``len(text)`` when the address
            ended too early).
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position

    def __reduce__(self) -> tuple[type[UCXLError], tuple[str, int]]:
        return (type(self), (str(self), self.position))


class NoSuchVersion(BzzzError, LookupError):
    """A temporal segment selects a version that does not exist (a resolution error).

    Attributes:
        address: canonical form of the address that was resolved.
        temporal: its canonical temporal segment (``*^``, ``~~2`` ...).
        selected: the version number the segment selects (outside ``1..versions``).
        versions: how many versions exist.
    """

    def __init__(self, address: str, temporal: str, selected: int, versions: int) -> None:
        self.address = address
        self.temporal = temporal
        self.selected = selected
        self.versions = versions
        if versions == 0:
            detail = "0 versions exist"
        else:
            exist = "1 version exists" if versions == 1 else f"{versions} versions exist"
            detail = f"it selects version {selected} but {exist} (1..{versions})"
        super().__init__(f"no such version {temporal!r} of {address}: {detail}")

    def __reduce__(self) -> tuple[type[NoSuchVersion], tuple[str, str, int, int]]:
        return (type(self), (self.address, self.temporal, self.selected, self.versions))


# What the parser expected where it failed. Both parsers use exactly these phrases.
EXPECT_SCHEME = "expected the scheme 'ucxl://'"
EXPECT_NAME = {
    field: f"expected the {field} name (starting with a letter or digit) or '*'"
    for field in ("agent", "role", "project", "task")
}
EXPECT_SEPARATOR = {
    "agent": "expected ':' after the agent name",
    "role": "expected '@' after the role name",
    "project": "expected ':' after the project name",
    "task": "expected '/' after the task name",
}
EXPECT_SHORT_NAME = {
    field: f"{EXPECT_SEPARATOR[field]} (names are at most 64 characters)"
    for field in ("agent", "role", "project", "task")
}
EXPECT_TEMPORAL = "expected the temporal segment ('*^', '*~', '*N', '~~N' or '^^N')"
EXPECT_AFTER_STAR = "expected '^', '~' or a version number after '*'"
EXPECT_TILDE = "expected '~~' (N versions back from the latest)"
EXPECT_CARET = "expected '^^' (N versions forward from the first)"
EXPECT_NONZERO = "expected a number from 1 to 999999999 without leading zeros"
EXPECT_SHORT_NUMBER = "expected a number of at most 9 digits"
EXPECT_AFTER_TEMPORAL = "expected '/' or the end of the address after the temporal segment"
EXPECT_SEGMENT = "expected a path segment (empty segments '//' are not allowed)"
EXPECT_PCHAR = "expected a path character (others must be percent-encoded)"
EXPECT_NO_QUERY = "expected a path character (a query '?' is not allowed)"
EXPECT_NO_FRAGMENT = "expected a path character (a fragment '#' is not allowed)"
EXPECT_HEX = "expected two hex digits after '%'"
EXPECT_NO_DOTS = "expected a path segment other than '.' or '..' (no path traversal)"
EXPECT_SHORT_PATH = "expected a path of at most 1024 characters"


def describe(text: str, position: int) -> str:
    """How a parse error message names the character at ``position`` of ``text``."""
    if position >= len(text):
        return "end of input"
    char = text[position]
    if "!" <= char <= "~":
        return repr(char)
    return f"U+{ord(char):04X} (only printable ASCII is allowed)"


def parse_error(text: str, position: int, expected: str, found: str | None = None) -> UCXLError:
    """The UCXLError for ``text`` failing at ``position`` where ``expected`` was expected."""
    if found is None:
        found = describe(text, position)
    return UCXLError(
        f"invalid UCXL address at position {position}: {expected}, found {found}", position
    )


def not_writable(canonical: str, position: int, why: str) -> UCXLError:
    """The UCXLError for writing to ``canonical``; ``position`` indexes the canonical form."""
    return UCXLError(
        f"cannot write to {canonical}: {why} (position {position}); "
        "a write needs a concrete address with no wildcards and the temporal segment '*^'",
        position,
    )
