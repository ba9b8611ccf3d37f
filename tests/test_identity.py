"""Identity: node ID format, key files and their permissions, init and the network key."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bzzz_edge.cli import main
from bzzz_edge.errors import IdentityError
from bzzz_edge.identity import (
    Identity,
    format_node_id,
    load_network_key,
    parse_node_id,
)


@given(st.binary(min_size=32, max_size=32))
def test_node_id_display_round_trips(raw):
    shown = format_node_id(raw)
    assert len(shown) == 63 and shown.count("-") == 7
    assert parse_node_id(shown) == raw
    assert parse_node_id(shown.lower().replace("-", " ")) == raw


@given(st.binary(min_size=32, max_size=32), st.integers(0, 62), st.sampled_from("AB27Z"))
def test_single_character_typo_is_detected(raw, index, replacement):
    shown = format_node_id(raw)
    if shown[index] == "-" or shown[index] == replacement:
        return
    typo = shown[:index] + replacement + shown[index + 1:]
    with pytest.raises(IdentityError):
        parse_node_id(typo)


def test_syncthing_device_id_vector_round_trips():
    # The device ID from Syncthing's own deviceid tests: all four Luhn checks must pass.
    shown = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2"
    raw = parse_node_id(shown)
    assert raw.hex().startswith("7f7c8723ecca5b4d")
    assert format_node_id(raw) == shown
    assert parse_node_id("p56ioi7mzjnu2yiqgdreydm2mgtimgl3bxnpq6w5bmtbbz4tjxzwicq2") == raw


def test_node_id_parse_errors_are_specific():
    with pytest.raises(IdentityError, match="56 characters"):
        parse_node_id("ABC")
    with pytest.raises(IdentityError, match="not a base32 character"):
        parse_node_id("!" * 56)


def test_typo_prone_digits_are_corrected():
    raw = bytes(range(32))
    shown = format_node_id(raw)
    fuzzy = shown.replace("O", "0").replace("I", "1").replace("B", "8")
    assert parse_node_id(fuzzy) == raw


def test_init_creates_private_files_and_refuses_second_time(tmp_path, capsys):
    data_dir = tmp_path / "n"
    assert main(["init", "--data-dir", str(data_dir)]) == 0
    first = Identity.load(data_dir / "identity.key")
    for name in ("identity.key", "network.key"):
        assert stat.S_IMODE(os.stat(data_dir / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert "[node]" in (data_dir / "config.toml").read_text()
    capsys.readouterr()
    assert main(["init", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and first.display_id in err and "--force" in err
    assert Identity.load(data_dir / "identity.key").node_id == first.node_id
    assert main(["init", "--data-dir", str(data_dir), "--force"]) == 0
    assert Identity.load(data_dir / "identity.key").node_id != first.node_id


def test_second_node_joins_network_with_exported_key(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["init", "--data-dir", str(a)]) == 0
    exported = tmp_path / "shared.key"
    assert main(["network-key", "export", "--data-dir", str(a), "--output", str(exported)]) == 0
    assert stat.S_IMODE(os.stat(exported).st_mode) == 0o600
    assert main(["init", "--data-dir", str(b), "--network-key-file", str(exported)]) == 0
    assert load_network_key(a / "network.key") == load_network_key(b / "network.key")
    assert Identity.load(a / "identity.key").node_id != Identity.load(b / "identity.key").node_id
    capsys.readouterr()
    assert main(["network-key", "export", "--data-dir", str(a)]) == 0
    assert bytes.fromhex(capsys.readouterr().out.strip()) == load_network_key(a / "network.key")


def test_readable_key_files_are_refused(tmp_path):
    identity = Identity.generate()
    path = tmp_path / "identity.key"
    identity.save(path)
    assert Identity.load(path).node_id == identity.node_id
    path.chmod(0o640)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load(path)


def test_malformed_key_files_are_clear_errors(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not a PEM private key"):
        Identity.load(path)
    with pytest.raises(IdentityError, match="does not hold a hex key"):
        load_network_key(path)
    path.write_text("ab" * 16)
    with pytest.raises(IdentityError, match="holds 16 bytes; expected 32"):
        load_network_key(path)
    with pytest.raises(IdentityError, match="run `bzzz-edge init` first"):
        Identity.load(tmp_path / "missing")


def test_identity_repr_shows_no_key_material():
    identity = Identity.generate()
    assert repr(identity) == f"Identity({identity.display_id})"


def test_init_with_bad_network_key_file_leaves_nothing_behind(tmp_path, capsys):
    data_dir, bad = tmp_path / "n", tmp_path / "bad.key"
    bad.write_text("not hex")
    assert main(["init", "--data-dir", str(data_dir), "--network-key-file", str(bad)]) == 2
    assert "does not hold a hex key" in capsys.readouterr().err
    assert not (data_dir / "identity.key").exists()
    good = tmp_path / "good.key"
    good.write_text("ab" * 32)
    assert main(["init", "--data-dir", str(data_dir), "--network-key-file", str(good)]) == 0
    assert load_network_key(data_dir / "network.key") == bytes.fromhex("ab" * 32)
