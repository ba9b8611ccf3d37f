"""UCXL address parser and model in pure Python: the fallback twin of ``_native/ucxl.pyx``. No I/O.

The grammar is in shared/ucxl/SPEC.md. Well-formed addresses take a fast path (one anchored
regex plus a little canonicalisation); anything the regex rejects, and the rare path whose
dot segments or length need a closer look, goes through :func:`_scan`, a character-by-character
scanner with the same structure as the compiled parser. The scanner is what defines the error
reported for bad input: the first character, left to right, at which the grammar fails.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from bzzz_edge.ucxl import _errors as E
from bzzz_edge.ucxl._errors import NoSuchVersion, UCXLError

__all__ = ["Address", "NoSuchVersion", "UCXLError", "parse"]

MAX_NAME = 64
MAX_PATH = 1024
MAX_DIGITS = 9
_FIELDS = ("agent", "role", "project", "task")
_SEPARATORS = (":", "@", ":", "/")

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _NAME_START | frozenset("-_.")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = _NAME_CHARS | frozenset("~")
_PCHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@")

_NAME_RE = r"(\*|[a-z0-9][a-z0-9._-]{0,63})"
_NUMBER_RE = r"[1-9][0-9]{0,8}"
# re.ASCII matters: without it IGNORECASE lets U+212A (Kelvin sign) match "k".
_FAST = re.compile(
    rf"ucxl://{_NAME_RE}:{_NAME_RE}@{_NAME_RE}:{_NAME_RE}/"
    rf"(\*\^|\*~|\*{_NUMBER_RE}|~~(?:{_NUMBER_RE})?|\^\^(?:{_NUMBER_RE})?)"
    r"((?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+)*/?)",
    re.ASCII | re.IGNORECASE,
)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_DOT_SEGMENT = re.compile(r"/(?:\.|%2[eE]){1,2}(?=/|\Z)")

_KINDS = {"*^": "latest", "*~": "first", "~~": "back", "^^": "forward"}  # else "*N": version
_PREFIX = {"latest": "*^", "first": "*~", "version": "*", "back": "~~", "forward": "^^"}


class Address:
    """A parsed UCXL address: immutable, compared and hashed by its canonical form.

    ``Address(text)`` is the same as ``parse(text)``.
    """

    __slots__ = ("_key", "agent", "canonical", "count", "path", "project", "role", "task",
                 "temporal")

    agent: str
    role: str
    project: str
    task: str
    temporal: str
    count: int | None
    path: str
    canonical: str
    _key: bytes | None

    def __init__(self, text: str) -> None:
        if hasattr(self, "canonical"):  # slots stay unset until this runs
            raise AttributeError("Address is immutable; cannot initialise it again")
        parsed = parse(text)
        for name in Address.__slots__:
            _set(self, name, getattr(parsed, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Address is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Address is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (parse, (self.canonical,))

    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        return f"Address({self.canonical!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Address:
            return NotImplemented
        return self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    @property
    def temporal_segment(self) -> str:
        """The canonical temporal segment: ``*^``, ``*~``, ``*N``, ``~~N`` or ``^^N``."""
        prefix = _PREFIX[self.temporal]
        return prefix if self.count is None else f"{prefix}{self.count}"

    @property
    def has_wildcards(self) -> bool:
        """Whether any of agent, role, project and task is ``*``."""
        return "*" in (self.agent, self.role, self.project, self.task)

    @property
    def content_key(self) -> bytes:
        """SHA-256 of the canonical form with the temporal segment replaced by ``*^``."""
        key = self._key
        if key is None:
            keyed = f"ucxl://{self.agent}:{self.role}@{self.project}:{self.task}/*^{self.path}"
            key = hashlib.sha256(keyed.encode("ascii")).digest()
            object.__setattr__(self, "_key", key)
        return key

    def matches(self, address: Address | str) -> bool:
        """Whether this address, used as a pattern, matches ``address`` (SPEC "Matching")."""
        if type(address) is not Address:
            if not isinstance(address, str):
                raise TypeError(
                    f"matches() takes an Address or a str, not {type(address).__name__}"
                )
            address = parse(address)
        for mine, theirs in (
            (self.agent, address.agent),
            (self.role, address.role),
            (self.project, address.project),
            (self.task, address.task),
        ):
            if mine != "*" and mine != theirs:
                return False
        pattern = self.path
        if not pattern or pattern == address.path:
            return True
        if pattern[-1] == "/":
            return address.path.startswith(pattern) or address.path == pattern[:-1]
        return False

    def resolve(self, versions: int) -> int:
        """The version (1..versions) this address's temporal segment selects.

        Raises:
            NoSuchVersion: the selection is outside 1..versions (always, when versions is 0).
        """
        n = _check_versions(versions)
        kind = self.temporal
        count = self.count or 0  # None only for latest and first, which do not use it
        if kind == "latest":
            selected = n
        elif kind == "first":
            selected = 1
        elif kind == "version":
            selected = count
        elif kind == "back":
            selected = n - count
        else:
            selected = 1 + count
        if not 1 <= selected <= n:
            raise NoSuchVersion(self.canonical, self.temporal_segment, selected, n)
        return selected

    def check_writable(self) -> None:
        """Raise UCXLError unless this is a concrete address a write may use.

        A write needs no wildcards and the temporal segment ``*^``; the error's position
        indexes the canonical form.
        """
        position = len("ucxl://")
        for field in _FIELDS:
            value = getattr(self, field)
            if value == "*":
                raise E.not_writable(self.canonical, position, f"the {field} is a wildcard")
            position += len(value) + 1
        if self.temporal != "latest":
            raise E.not_writable(
                self.canonical,
                position,
                f"the temporal segment is {self.temporal_segment!r}, not '*^'",
            )


def _check_versions(versions: object) -> int:
    if isinstance(versions, bool) or not isinstance(versions, int):
        raise TypeError(f"versions must be an int, not {type(versions).__name__}")
    if versions < 0:
        raise ValueError(f"versions must be >= 0, not {versions}")
    return versions


_new_address = object.__new__
_set = object.__setattr__


def _fix_escape(match: re.Match[str]) -> str:
    hex_digits = match.group(1)
    char = chr(int(hex_digits, 16))
    return char if char in _UNRESERVED else "%" + hex_digits.upper()


def _canonical_name(name: str) -> str:
    name = name.lower()
    return "*" if name == "any" else name


def _build(names: tuple[str, str, str, str], temporal: str, path: str) -> Address:
    """The Address for already validated parts (names and temporal as written)."""
    agent, role, project, task = (_canonical_name(name) for name in names)
    head = temporal[:2]
    kind = _KINDS.get(head) or "version"
    if kind == "version":
        count: int | None = int(temporal[1:])
    elif kind in ("back", "forward"):
        count = int(temporal[2:]) if len(temporal) > 2 else 1
    else:
        count = None
    if path == "/":
        path = ""
    elif "%" in path:
        path = _ESCAPE.sub(_fix_escape, path)
    segment = head if count is None else f"{_PREFIX[kind]}{count}"
    address = _new_address(Address)
    _set(address, "agent", agent)
    _set(address, "role", role)
    _set(address, "project", project)
    _set(address, "task", task)
    _set(address, "temporal", kind)
    _set(address, "count", count)
    _set(address, "path", path)
    _set(address, "canonical", f"ucxl://{agent}:{role}@{project}:{task}/{segment}{path}")
    _set(address, "_key", None)
    return address


def parse(text: str) -> Address:
    """Parse a UCXL address into its canonical :class:`Address`.

    Raises:
        UCXLError: ``text`` is not a well-formed address; ``.position`` says where.
        TypeError: ``text`` is not a str.
    """
    if type(text) is not str:
        if not isinstance(text, str):
            raise TypeError(f"a UCXL address must be a str, not {type(text).__name__}")
        text = str.__str__(text)  # the characters, whatever the subclass's __str__ says
    match = _FAST.fullmatch(text)
    if match is not None:
        agent, role, project, task, temporal, path = match.groups()
        if len(path) <= MAX_PATH and (
            ("." not in path and "%" not in path) or _DOT_SEGMENT.search(path) is None
        ):
            return _build((agent, role, project, task), temporal, path)
    return _scan(text)


def _scan(text: str) -> Address:
    """Parse ``text`` one character at a time; raise the UCXLError for its first bad one."""
    n = len(text)
    for i, want in enumerate("ucxl://"):
        if i >= n or text[i].lower() != want or not text[i].isascii():
            raise E.parse_error(text, i, E.EXPECT_SCHEME)
    i = 7
    names = []
    for field, separator in zip(_FIELDS, _SEPARATORS, strict=True):
        end = _scan_name(text, i, field, separator)
        names.append(text[i:end])
        i = end + 1
    end, temporal = _scan_temporal(text, i)
    if end < n and text[end] != "/":
        raise E.parse_error(text, end, E.EXPECT_AFTER_TEMPORAL)
    _scan_path(text, end)
    return _build((names[0], names[1], names[2], names[3]), temporal, text[end:])


def _scan_name(text: str, start: int, field: str, separator: str) -> int:
    """Index of the separator that ends the name starting at ``start``."""
    n = len(text)
    char = text[start] if start < n else ""
    if char == "*":
        end = start + 1
    elif char in _NAME_START and char:
        end = start + 1
        while end < n and end - start < MAX_NAME and text[end] in _NAME_CHARS:
            end += 1
        if end - start == MAX_NAME and end < n and text[end] in _NAME_CHARS:
            raise E.parse_error(text, end, E.EXPECT_SHORT_NAME[field])
    else:
        raise E.parse_error(text, start, E.EXPECT_NAME[field])
    if end >= n or text[end] != separator:
        raise E.parse_error(text, end, E.EXPECT_SEPARATOR[field])
    return end


def _scan_temporal(text: str, start: int) -> tuple[int, str]:
    """End index and text of the temporal segment starting at ``start``."""
    n = len(text)
    char = text[start] if start < n else ""
    nxt = text[start + 1] if start + 1 < n else ""
    if char == "*":
        if nxt in ("^", "~") and nxt:
            end = start + 2
        elif nxt in _DIGITS and nxt:
            end = _scan_number(text, start + 1)
        else:
            raise E.parse_error(text, start + 1, E.EXPECT_AFTER_STAR)
    elif char in ("~", "^") and char:
        if nxt != char:
            raise E.parse_error(text, start + 1, E.EXPECT_TILDE if char == "~" else E.EXPECT_CARET)
        end = start + 2
        if end < n and text[end] in _DIGITS:
            end = _scan_number(text, end)
    else:
        raise E.parse_error(text, start, E.EXPECT_TEMPORAL)
    return end, text[start:end]


def _scan_number(text: str, start: int) -> int:
    """End index of the decimal number starting at ``start`` (a digit)."""
    if text[start] == "0":
        raise E.parse_error(text, start, E.EXPECT_NONZERO)
    n = len(text)
    end = start + 1
    while end < n and end - start < MAX_DIGITS and text[end] in _DIGITS:
        end += 1
    if end < n and text[end] in _DIGITS:
        raise E.parse_error(text, end, E.EXPECT_SHORT_NUMBER)
    return end


def _scan_path(text: str, start: int) -> None:
    """Check the path from ``start`` (a "/" or the end) to the end of ``text``."""
    n = len(text)
    limit = start + MAX_PATH
    # Reading any index >= limit while the input goes on is the length error, so the error is
    # still the leftmost one and the scan never looks further than the limit.
    i = start
    while i < n:  # text[i] == "/"
        i += 1
        if i == n:
            return  # trailing "/" (or the lone "/" that means no path)
        segment_start = i
        only_dots = True
        while True:
            if i == n:
                char = ""
            elif i >= limit:
                raise E.parse_error(text, i, E.EXPECT_SHORT_PATH, "a longer path")
            else:
                char = text[i]
            if char == "/" or not char:
                if i == segment_start:
                    raise E.parse_error(text, i, E.EXPECT_SEGMENT)
                if only_dots and _is_dot_segment(text[segment_start:i]):
                    raise E.parse_error(
                        text, segment_start, E.EXPECT_NO_DOTS, repr(text[segment_start:i])
                    )
                break
            if char == "%":
                for j in (i + 1, i + 2):
                    if j < n and j >= limit:
                        raise E.parse_error(text, j, E.EXPECT_SHORT_PATH, "a longer path")
                    if j >= n or text[j] not in _HEX:
                        raise E.parse_error(text, j, E.EXPECT_HEX)
                if text[i + 1 : i + 3] not in ("2e", "2E"):
                    only_dots = False
                i += 3
            elif char in _PCHARS:
                if char != ".":
                    only_dots = False
                i += 1
            elif char == "?":
                raise E.parse_error(text, i, E.EXPECT_NO_QUERY)
            elif char == "#":
                raise E.parse_error(text, i, E.EXPECT_NO_FRAGMENT)
            else:
                raise E.parse_error(text, i, E.EXPECT_PCHAR)


def _is_dot_segment(segment: str) -> bool:
    return segment.replace("%2e", ".").replace("%2E", ".") in (".", "..")
