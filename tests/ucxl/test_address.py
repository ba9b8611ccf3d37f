"""The Address model and the parser's edges, on each implementation (``ucxl_impl``)."""

from __future__ import annotations

import copy
import hashlib
import pickle
from types import ModuleType

import pytest

import bzzz_edge.ucxl as ucxl
from bzzz_edge import _native
from bzzz_edge.errors import BzzzError
from bzzz_edge.ucxl import NoSuchVersion, UCXLError

BASE = "ucxl://a:b@c:d/"
LONGEST_NAME = "n" * 64
# Every part at its maximum: four 64-character names, a 9-digit count, a 1024-character path.
LONGEST = (
    f"ucxl://{LONGEST_NAME}:{LONGEST_NAME}@{LONGEST_NAME}:{LONGEST_NAME}/~~999999999/" + "p" * 1023
)


def _error(module: ModuleType, text: object) -> UCXLError:
    with pytest.raises(UCXLError) as info:
        module.parse(text)
    return info.value


# (input, index of the character the error must point at, a word the message must contain)
OFFENDING = [
    ("", 0, "end of input"),
    ("ucxl:/a:b@c:d/*^", 6, "'ucxl://'"),
    ("http://a:b@c:d/*^", 0, "'h'"),
    ("ucxl://a:b@c:d", 14, "'/' after the task"),
    ("ucxl://-a:b@c:d/*^", 7, "agent name"),
    ("ucxl://a:@c:d/*^", 9, "role name"),
    ("ucxl://a:b:c@d:e/*^", 10, "'@' after the role"),
    ("ucxl://a%41:b@c:d/*^", 8, "'%'"),
    (f"ucxl://{LONGEST_NAME}x:r@p:t/*^", 71, "at most 64"),
    ("ucxl://a:b@c:d/latest", 15, "temporal"),
    ("ucxl://a:b@c:d/*", 16, "end of input"),
    ("ucxl://a:b@c:d/*01", 16, "leading zeros"),
    ("ucxl://a:b@c:d/^^07", 17, "leading zeros"),
    ("ucxl://a:b@c:d/*1234567890", 25, "9 digits"),
    ("ucxl://a:b@c:d/~^", 16, "'~~'"),
    ("ucxl://a:b@c:d/*^x", 17, "after the temporal"),
    ("ucxl://a:b@c:d/*^/x//y", 20, "empty segments"),
    ("ucxl://a:b@c:d/*^/../etc/passwd", 18, "traversal"),
    ("ucxl://a:b@c:d/*^/x/%2E%2e", 20, "traversal"),
    ("ucxl://a:b@c:d/*^/x/./", 20, "traversal"),
    ("ucxl://a:b@c:d/*^/bad%zz", 22, "hex"),
    ("ucxl://a:b@c:d/*^/bad%4", 23, "end of input"),
    ("ucxl://a:b@c:d/*^/q?x=1", 19, "query"),
    ("ucxl://a:b@c:d/*^/frag#1", 22, "fragment"),
    ("ucxl://a:b@c:d/*^/a[1]", 19, "percent-encoded"),
    ("ucxl://a:b@c:d/*^/caf\u00e9", 21, "U+00E9"),
    ("ucxl://a:b@c:d/*^/caf\U0001f600", 21, "U+1F600"),
    ("ucxl://a b:c@d:e/*^", 8, "U+0020"),
    ("ucxl://a:b@c:d/*^\n", 17, "U+000A"),
    ("ucxl\u212a://a:b@c:d/*^", 4, "U+212A"),
    ("uc\u212ael://a:b@c:d/*^", 2, "U+212A"),
    (BASE + "*^/" + "x" * 1024, len(BASE + "*^") + 1024, "1024"),
]


@pytest.mark.parametrize(("text", "position", "word"), OFFENDING)
def test_error_points_at_the_offending_character(
    ucxl_impl: ModuleType, text: str, position: int, word: str
) -> None:
    error = _error(ucxl_impl, text)
    assert error.position == position
    assert word in str(error)
    assert str(error).startswith(f"invalid UCXL address at position {position}: expected")


def test_ucxl_error_is_a_bzzz_value_error_with_position() -> None:
    assert issubclass(UCXLError, BzzzError)
    assert issubclass(UCXLError, ValueError)
    assert issubclass(NoSuchVersion, BzzzError)
    assert issubclass(NoSuchVersion, LookupError)
    error = pickle.loads(pickle.dumps(UCXLError("bad", 3)))
    assert (str(error), error.position) == ("bad", 3)


def test_package_uses_the_loader_choice() -> None:
    chosen = _native.load("ucxl")
    assert ucxl.parse is chosen.parse
    assert ucxl.Address is chosen.Address
    want_pure = _native.FORCED_PURE or _native.compiled_module("ucxl") is None
    assert (chosen is _native.pure_module("ucxl")) is want_pure
    assert set(ucxl.__all__) == {"Address", "NoSuchVersion", "UCXLError", "parse"}


def test_both_modules_share_the_exception_classes(ucxl_impl: ModuleType) -> None:
    assert ucxl_impl.UCXLError is UCXLError
    assert ucxl_impl.NoSuchVersion is NoSuchVersion
    assert set(ucxl_impl.__all__) == {"Address", "NoSuchVersion", "UCXLError", "parse"}


@pytest.mark.parametrize("value", [b"ucxl://a:b@c:d/*^", None, 42, ["ucxl://a:b@c:d/*^"]])
def test_non_str_input_is_a_type_error(ucxl_impl: ModuleType, value: object) -> None:
    with pytest.raises(TypeError, match=f"must be a str, not {type(value).__name__}"):
        ucxl_impl.parse(value)
    with pytest.raises(TypeError):
        ucxl_impl.Address(value)


def test_str_subclass_parses_to_a_plain_str_canonical_form(ucxl_impl: ModuleType) -> None:
    class Text(str):
        def __str__(self) -> str:
            return "not the address"

    address = ucxl_impl.parse(Text(BASE + "*^/x"))
    assert type(address.canonical) is str
    assert address == ucxl_impl.parse(BASE + "*^/x")


def test_address_constructor_parses(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.Address("UCXL://A:B@C:D/~~")
    assert address == ucxl_impl.parse("ucxl://a:b@c:d/~~1")
    assert isinstance(address, ucxl_impl.Address)
    with pytest.raises(UCXLError):
        ucxl_impl.Address("ucxl://a:b@c:d")
    with pytest.raises(AttributeError, match="immutable"):
        address.__init__("ucxl://x:y@z:w/*^")
    assert address.agent == "a"


def test_longest_address_is_valid_and_under_the_2048_limit(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.parse(LONGEST)
    assert len(address.path) == 1024
    assert len(LONGEST) < 2048  # the 2048 limit is implied by the part limits
    error = _error(ucxl_impl, LONGEST + "p")
    assert error.position == len(LONGEST)


def test_huge_and_wide_inputs_fail_at_the_path_limit(ucxl_impl: ModuleType) -> None:
    prefix = BASE + "*^/"
    for tail in ("x" * 100_000, "x" * 3000 + "\U0001f600", "x" * 1200 + "\u0101"):
        assert _error(ucxl_impl, prefix + tail).position == len(prefix) - 1 + 1024
    # a wide character early in a long string is still the one reported
    error = _error(ucxl_impl, prefix + "x" * 10 + "\u0101" + "y" * 5000)
    assert (error.position, "U+0101" in str(error)) == (len(prefix) + 10, True)


def test_canonical_form_rules(ucxl_impl: ModuleType) -> None:
    parse = ucxl_impl.parse
    assert str(parse("UcXl://AnY:ROLE@Proj.X:T_1/^^/A/%7e%41%2d%5F%2E/%2f%c3%A9/")) == (
        "ucxl://*:role@proj.x:t_1/^^1/A/~A-_./%2F%C3%A9/"
    )
    assert parse(BASE + "*^/").path == ""
    assert parse(BASE + "*^/dir/").path == "/dir/"
    assert parse(BASE + "*7/%25%20").path == "/%25%20"
    assert parse("ucxl://anyx:anY@any.b:ANY/*~").canonical == "ucxl://anyx:*@any.b:*/*~"


def test_address_is_immutable(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.parse(BASE + "*^/x")
    for name in ("agent", "canonical", "path", "temporal", "count", "invented"):
        with pytest.raises(AttributeError):
            setattr(address, name, "y")
    with pytest.raises(AttributeError):
        del address.agent
    assert address.canonical == BASE + "*^/x"


def test_equality_and_hash_follow_the_canonical_form(ucxl_impl: ModuleType) -> None:
    parse = ucxl_impl.parse
    one = parse("UCXL://A:any@C:d/~~/x/%7e")
    two = parse("ucxl://a:*@c:d/~~1/x/~")
    assert one == two
    assert (one != two) is False
    assert hash(one) == hash(two) == hash(two.canonical)
    assert len({one, two, parse(BASE + "*^")}) == 2
    assert one != parse("ucxl://a:*@c:d/~~2/x/~")
    assert one != two.canonical  # an Address is not equal to its string


def test_repr_round_trips(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.parse("UCXL://A:b@c:d/*3/it's")
    assert repr(address) == f"Address({address.canonical!r})"
    assert eval(repr(address), {"Address": ucxl_impl.Address}) == address


def test_pickle_and_copy_round_trip(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.parse(BASE + "^^4/some/dir/")
    for clone in (pickle.loads(pickle.dumps(address)), copy.copy(address), copy.deepcopy(address)):
        assert clone == address
        assert type(clone) is type(address)
        assert clone.temporal == "forward"
        assert clone.count == 4


def test_content_key_ignores_the_temporal_segment(ucxl_impl: ModuleType) -> None:
    parse = ucxl_impl.parse
    expected = hashlib.sha256(b"ucxl://a:b@c:d/*^/doc/x").digest()
    for temporal in ("*^", "*~", "*12", "~~", "~~3", "^^", "^^9"):
        address = parse(f"UCXL://A:B@c:d/{temporal}/doc/%78")
        assert address.content_key == expected
    assert len(expected) == 32
    assert parse(BASE + "*^/doc/y").content_key != expected
    assert parse(BASE + "*^").content_key == hashlib.sha256(b"ucxl://a:b@c:d/*^").digest()


def test_has_wildcards(ucxl_impl: ModuleType) -> None:
    parse = ucxl_impl.parse
    assert not parse(BASE + "*3").has_wildcards  # the temporal segment is no wildcard
    for text in (
        "ucxl://*:b@c:d/*^",
        "ucxl://a:ANY@c:d/*^",
        "ucxl://a:b@any:d/*^",
        "ucxl://a:b@c:*/*^",
    ):
        assert parse(text).has_wildcards


@pytest.mark.parametrize(
    ("text", "position", "word"),
    [
        ("ucxl://*:b@c:d/*^", 7, "agent is a wildcard"),
        ("ucxl://agent:ANY@c:d/*^", 13, "role is a wildcard"),
        ("ucxl://agent:r@p:any/*^/x", 17, "task is a wildcard"),
        ("ucxl://agent:r@p:t/~~/x", 19, "'~~1'"),
        ("ucxl://agent:r@p:t/*~", 19, "'*~'"),
        ("ucxl://agent:r@p:t/*1", 19, "'*1'"),
    ],
)
def test_check_writable_refuses_wildcards_and_other_versions(
    ucxl_impl: ModuleType, text: str, position: int, word: str
) -> None:
    address = ucxl_impl.parse(text)
    with pytest.raises(UCXLError) as info:
        address.check_writable()
    assert info.value.position == position
    assert word in str(info.value)
    assert address.canonical in str(info.value)


def test_check_writable_accepts_a_concrete_latest_address(ucxl_impl: ModuleType) -> None:
    assert ucxl_impl.parse("ucxl://w1:backend@bzzz:t9/*^/notes/").check_writable() is None


def test_resolve_rejects_bad_version_counts(ucxl_impl: ModuleType) -> None:
    address = ucxl_impl.parse(BASE + "*^")
    for bad in ("3", 2.0, None, True):
        with pytest.raises(TypeError, match="versions must be an int"):
            address.resolve(bad)
    with pytest.raises(ValueError, match="versions must be >= 0"):
        address.resolve(-1)
    assert address.resolve(10**30) == 10**30


def test_no_such_version_says_how_many_exist(ucxl_impl: ModuleType) -> None:
    with pytest.raises(NoSuchVersion) as info:
        ucxl_impl.parse(BASE + "~~7/x").resolve(3)
    error = info.value
    assert (error.versions, error.selected, error.temporal) == (3, -4, "~~7")
    assert error.address == BASE + "~~7/x"
    assert "3 versions exist" in str(error)
    assert not isinstance(error, UCXLError)
    with pytest.raises(NoSuchVersion, match="0 versions exist"):
        ucxl_impl.parse(BASE + "*^").resolve(0)
    with pytest.raises(NoSuchVersion, match="1 version exists"):
        ucxl_impl.parse(BASE + "*2").resolve(1)
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.versions) == (str(error), 3)


def test_matches_edge_cases(ucxl_impl: ModuleType) -> None:
    parse = ucxl_impl.parse
    assert not parse(BASE + "*^").matches(parse("ucxl://*:b@c:d/*^"))  # "a" is not "*"
    assert parse("ucxl://*:b@c:d/*^/src/").matches("ucxl://z:b@c:d/*^/src/")
    assert not parse(BASE + "*^/src/").matches(BASE + "*^/sr")
    assert not parse(BASE + "*^/src").matches(BASE + "*^/src/")
    assert parse(BASE + "*^/src/").matches(BASE + "*^/src/%41")
    assert not parse(BASE + "*^/src/").matches(BASE + "*^/SRC/a")  # path case matters
    with pytest.raises(UCXLError):
        parse(BASE + "*^").matches("ucxl://nope")
    with pytest.raises(TypeError, match="Address or a str"):
        parse(BASE + "*^").matches(42)
