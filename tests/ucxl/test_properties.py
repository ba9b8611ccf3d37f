"""Property tests: generated, mutated and arbitrary addresses on both implementations.

Valid addresses are built from parts that each know their own canonical form, so the expected
canonical address comes from the generator, not from the parser under test. Mutations
(insertions, deletions, replacements with grammar characters, escapes, dot segments, control
and non-ASCII characters) then push them off the happy path, where the two implementations must
still agree exactly: same canonical form and fields, or the same error, message and position.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bzzz_edge.ucxl import NoSuchVersion

Outcome = Callable[[ModuleType, Any], tuple[Any, ...]]

# ucxl_impl is function-scoped but only hands out a module, so reusing it across examples is safe.
PER_IMPL = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BOTH = settings(max_examples=400, deadline=None)

NAME_START = string.ascii_letters + string.digits
NAME_CHARS = NAME_START + "-_."
UNRESERVED = NAME_CHARS + "~"
PCHARS = UNRESERVED + "!$&'()*+,;=:@"

schemes = st.sampled_from(["ucxl", "UCXL", "Ucxl", "uCxL"]).map(lambda s: (s, "ucxl"))


def _canonical_name(raw: str) -> str:
    return "*" if raw.lower() in ("*", "any") else raw.lower()


names = st.one_of(
    st.sampled_from(["*", "any", "ANY", "aNy"]),
    st.builds(str.__add__, st.sampled_from(NAME_START), st.text(NAME_CHARS, max_size=12)),
    st.builds(
        str.__add__, st.sampled_from(NAME_START), st.text(NAME_CHARS, min_size=60, max_size=63)
    ),
).map(lambda raw: (raw, _canonical_name(raw)))

numbers = st.one_of(st.integers(1, 12), st.integers(1, 999_999_999)).map(str)
temporals = st.one_of(
    st.sampled_from([("*^", "*^"), ("*~", "*~"), ("~~", "~~1"), ("^^", "^^1")]),
    numbers.map(lambda n: ("*" + n, "*" + n)),
    numbers.map(lambda n: ("~~" + n, "~~" + n)),
    numbers.map(lambda n: ("^^" + n, "^^" + n)),
)


@st.composite
def escapes(draw: st.DrawFn) -> tuple[str, str]:
    value = draw(st.one_of(st.sampled_from(b"~.-_/%Aaz09@:?#"), st.integers(0, 255)))
    digits = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in f"{value:02X}")
    char = chr(value)
    return "%" + digits, char if char in UNRESERVED else f"%{value:02X}"


def _not_dots(part: tuple[str, str]) -> bool:
    return part[1] not in (".", "..")


segments = (
    st.lists(
        st.one_of(st.sampled_from(PCHARS).map(lambda c: (c, c)), escapes()), min_size=1, max_size=10
    )
    .map(lambda parts: ("".join(p[0] for p in parts), "".join(p[1] for p in parts)))
    .filter(_not_dots)
)


# (as written, what a canonicaliser that forgot the traversal rule would make of it)
DOT_SEGMENTS = [
    (raw, raw.replace("%2e", ".").replace("%2E", "."))
    for raw in (".", "..", "%2e", "%2E", ".%2E", "%2E%2e", "%2e.", "...", "%2E%2E.")
]
LONG_PATH_ENDS = [
    ("", ""),
    ("/z", "/z"),
    ("%41", "A"),
    ("%2E", "."),
    ("/%2ex", "/.x"),
    ("%2f", "%2F"),
]


@st.composite
def paths(draw: st.DrawFn, overlong: bool = False) -> tuple[str, str]:
    """(path as written, canonical path).

    With overlong (for mutation only) paths may pass 1024 characters and hold dot segments.
    """
    kind = draw(st.sampled_from(["none", "lone", "segments", "long"]))
    if kind == "none":
        return "", ""
    if kind == "lone":
        return "/", ""
    if kind == "long":  # close to the 1024-character limit
        end, canonical_end = draw(st.sampled_from(LONG_PATH_ENDS))
        size = draw(st.integers(1010, 1030 if overlong else 1023 - len(end)))
        return "/" + "y" * size + end, "/" + "y" * size + canonical_end
    segment = st.one_of(segments, st.sampled_from(DOT_SEGMENTS)) if overlong else segments
    parts = draw(st.lists(segment, min_size=1, max_size=5))
    trailing = "/" if draw(st.booleans()) else ""
    return (
        "".join("/" + raw for raw, _ in parts) + trailing,
        "".join("/" + canon for _, canon in parts) + trailing,
    )


@st.composite
def addresses(draw: st.DrawFn) -> tuple[str, str]:
    """(address as written, its canonical form)."""
    parts = [
        draw(schemes),
        draw(names),
        draw(names),
        draw(names),
        draw(names),
        draw(temporals),
        draw(paths()),
    ]
    template = "{}://{}:{}@{}:{}/{}{}"
    return template.format(*(p[0] for p in parts)), template.format(*(p[1] for p in parts))


# Parts only a mutated address uses: names around the 64-character limit, numbers with too
# many digits or leading zeros.
odd_names = st.builds(
    str.__add__, st.sampled_from(NAME_START), st.text(NAME_CHARS, min_size=62, max_size=65)
)
odd_temporals = st.builds(
    "{}{}{}".format,
    st.sampled_from(["*", "~~", "^^", "~", "^", "*^", "~^"]),
    st.sampled_from(["", "0", "00"]),
    st.one_of(
        st.sampled_from(["", "1", "10", "999999999", "1000000000", "1234567890", "99999999999"]),
        st.integers(0, 10**11).map(str),
    ),
)
PIECES = [
    "/",
    ":",
    "@",
    "%",
    ".",
    "..",
    "/../",
    "/./",
    "/%2e%2E",
    "/%2E",
    "/.%2e/",
    "%2E.",
    "%2e",
    "%zz",
    "%4",
    "%%",
    "//",
    "*",
    "~",
    "^",
    "?",
    "#",
    " ",
    "\t",
    "\n",
    "\x00",
    "\x7f",
    "\x80",
    "\u00e9",
    "\u0101",
    "\u212a",
    "\U0001f600",
    "0",
    "9",
    "a",
    "Z",
    "-",
    "_",
    "any",
    "~~",
    "^^",
    "*^",
    "[",
    "\\",
    '"',
]
pieces = st.one_of(st.sampled_from(PIECES), st.characters(), st.text(max_size=3))


def _mutate(draw: st.DrawFn, text: str) -> str:
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    i = draw(st.integers(0, len(text)))
    if op == "insert":
        return text[:i] + draw(pieces) + text[i:]
    if op == "delete":
        return text[:i] + text[draw(st.integers(i, min(len(text), i + 4))) :]
    return text[:i] + draw(pieces) + text[i + 1 :]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A generated address with up to three of its parts (separators included) mutated, and
    perhaps cut short."""
    name = st.one_of(names.map(lambda pair: pair[0]), odd_names)
    parts = [
        draw(schemes)[0],
        "://",
        draw(name),
        ":",
        draw(name),
        "@",
        draw(name),
        ":",
        draw(name),
        "/",
        draw(st.one_of(temporals.map(lambda pair: pair[0]), odd_temporals)),
        draw(paths(overlong=True))[0],
    ]
    # Mutating a chosen part, rather than a position in the whole, spreads the damage evenly
    # over the grammar instead of piling it up near the start.
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]))
        parts[k] = _mutate(draw, parts[k])
    text = "".join(parts)
    if draw(st.booleans()):  # cut short, often at a separator: "found end of input" errors
        cuts = [i + d for i, c in enumerate(text) if c in ":@/%" for d in (0, 1)]
        where = st.integers(0, len(text))
        text = text[: draw(st.one_of(where, st.sampled_from(cuts)) if cuts else where)]
    return text


@st.composite
def mutated_paths(draw: st.DrawFn) -> str:
    """A generated address whose temporal segment and path (only) may be mutated."""
    head = draw(addresses())[0]
    path = draw(paths(overlong=True))[0]
    tail = draw(st.one_of(temporals.map(lambda pair: pair[0]), odd_temporals)) + path
    for _ in range(draw(st.integers(0, 3))):
        tail = _mutate(draw, tail)
    return head[: head.index("/", 7) + 1] + tail


GRAMMAR = "ucxlUCXL:/@*^~-_.%0123456789abcdefAEF?# \u00e9"
arbitrary = st.one_of(
    st.text(max_size=80),
    st.text(GRAMMAR, max_size=60),
    st.text(GRAMMAR, max_size=40).map(lambda t: "ucxl://" + t),
)


@PER_IMPL
@given(pair=addresses())
def test_generated_address_parses_to_the_expected_canonical_form(
    ucxl_impl: ModuleType, pair: tuple[str, str]
) -> None:
    text, canonical = pair
    address = ucxl_impl.parse(text)
    assert address.canonical == canonical
    again = ucxl_impl.parse(address.canonical)
    assert again == address
    assert again.canonical == address.canonical


@PER_IMPL
@given(text=st.one_of(mutated(), mutated_paths(), arbitrary))
def test_any_str_gives_an_address_or_ucxl_error_and_canonical_is_a_fixed_point(
    ucxl_impl: ModuleType, outcome: Outcome, text: str
) -> None:
    result = outcome(ucxl_impl, text)  # anything but UCXLError escapes and fails
    if result[0] == "ok":
        canonical = result[1]
        assert outcome(ucxl_impl, canonical)[1:] == result[1:]


@BOTH
@given(pair=addresses())
def test_implementations_agree_on_valid_addresses(
    pure: ModuleType, compiled: ModuleType, outcome: Outcome, pair: tuple[str, str]
) -> None:
    assert outcome(pure, pair[0]) == outcome(compiled, pair[0])


@BOTH
@given(text=st.one_of(mutated(), mutated_paths()))
def test_implementations_agree_on_mutated_addresses(
    pure: ModuleType, compiled: ModuleType, outcome: Outcome, text: str
) -> None:
    assert outcome(pure, text) == outcome(compiled, text)


@BOTH
@given(text=arbitrary)
def test_implementations_agree_on_arbitrary_text(
    pure: ModuleType, compiled: ModuleType, outcome: Outcome, text: str
) -> None:
    assert outcome(pure, text) == outcome(compiled, text)


@BOTH
@given(text=st.one_of(mutated(), mutated_paths(), arbitrary))
def test_pure_fast_path_agrees_with_its_scanner(
    pure: ModuleType, outcome: Outcome, text: str
) -> None:
    # The pure twin answers well-formed input with a regex and everything else with _scan;
    # _scan alone must give the same outcome for every input.
    class ScanOnly:
        UCXLError = pure.UCXLError
        parse = staticmethod(pure._scan)

    assert outcome(pure, text) == outcome(ScanOnly, text)  # type: ignore[arg-type]


def _spec_matches(pattern: Any, address: Any) -> bool:
    for field in ("agent", "role", "project", "task"):
        mine = getattr(pattern, field)
        if mine != "*" and mine != getattr(address, field):
            return False
    path = pattern.path
    if not path or path == address.path:
        return True
    return path.endswith("/") and (address.path.startswith(path) or address.path == path[:-1])


small_names = st.sampled_from(["*", "a", "B", "any"])
small_paths = st.sampled_from(["", "/", "/src", "/src/", "/src/x", "/src/x/", "/srcx", "/SRC/x"])
small_addresses = st.builds(
    "ucxl://{}:{}@{}:{}/{}{}".format,
    small_names,
    small_names,
    small_names,
    small_names,
    st.sampled_from(["*^", "*~", "*2", "~~", "^^3"]),
    small_paths,
)


@PER_IMPL
@given(pattern=small_addresses, address=small_addresses)
def test_matches_follows_the_spec(ucxl_impl: ModuleType, pattern: str, address: str) -> None:
    p, a = ucxl_impl.parse(pattern), ucxl_impl.parse(address)
    assert p.matches(a) is _spec_matches(p, a)
    assert p.matches(address) is p.matches(a)


def _spec_selects(kind: str, count: int | None, versions: int) -> int:
    return {
        "latest": versions,
        "first": 1,
        "version": count,
        "back": versions - (count or 0),
        "forward": 1 + (count or 0),
    }[kind]


@PER_IMPL
@given(temporal=temporals, versions=st.one_of(st.integers(0, 12), st.integers(0, 10**12)))
def test_resolve_follows_the_spec(
    ucxl_impl: ModuleType, temporal: tuple[str, str], versions: int
) -> None:
    address = ucxl_impl.parse(f"ucxl://a:b@c:d/{temporal[0]}")
    selected = _spec_selects(address.temporal, address.count, versions)
    if 1 <= selected <= versions:
        assert address.resolve(versions) == selected
    else:
        try:
            address.resolve(versions)
        except NoSuchVersion as exc:
            assert (exc.versions, exc.selected) == (versions, selected)
        else:
            raise AssertionError(f"{temporal[0]} of {versions} should not resolve")


SEEDS = [
    "UCXL://GPT4:Architect@Chorus:Design/~~/src/%7emain.go/",
    "ucxl://any:b@c:d/^^12/x:y@z/!$&'()*+,;=/%2e%2E%2e",
    f"ucxl://{'n' * 64}:{'R' * 64}@{'p' * 64}:{'t' * 64}/*999999999/a",
    "ucxl://a:b@c:d/*^/" + "y" * 1018 + "/%2e.",
    f"ucxl://{'n' * 65}:r@p:t/~~1234567890",  # invalid: its prefixes end at each limit
]
EDITS = [
    "",
    "a",
    "Z",
    "0",
    "9",
    ".",
    "-",
    "/",
    ":",
    "@",
    "*",
    "~",
    "^",
    "%",
    "%2e",
    "%2E",
    "%7e",
    "%zz",
    "?",
    "#",
    " ",
    "\x00",
    "\x7f",
    "\x80",
    "\u00ff",
    "\u0101",
    "\U0001f600",
]


def _neighbours(seed: str) -> set[str]:
    """Every prefix of seed, and every single insertion, deletion and replacement near the
    parts of it the grammar cares about (all of a short seed, the ends of a long one)."""
    texts = {seed[:i] for i in range(len(seed) + 1)}
    positions = (
        range(len(seed) + 1)
        if len(seed) < 300
        else [*range(300), *range(len(seed) - 40, len(seed) + 1)]
    )
    for i in positions:
        for edit in EDITS:
            texts.add(seed[:i] + edit + seed[i:])
            texts.add(seed[:i] + edit + seed[i + 1 :])
    return texts


@pytest.mark.parametrize("seed", SEEDS)
def test_implementations_agree_on_every_neighbour_of_a_seed(
    pure: ModuleType, compiled: ModuleType, outcome: Outcome, seed: str
) -> None:
    for text in _neighbours(seed):
        assert outcome(pure, text) == outcome(compiled, text), text
