"""A full disk: a store on a small tmpfs we mount ourselves (root) gives a clear StorageError
and loses nothing it acknowledged; the 32-bit map ceiling is checked at config time."""

from __future__ import annotations

import os
import subprocess

import pytest
import trio

from bzzz_edge.config import load_config
from bzzz_edge.errors import ConfigError, StorageError
from bzzz_edge.store import Store, _platform
from bzzz_edge.store.content import DATABASES, ContentStore


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(small_disk):
    store = Store(small_disk / "store", map_size=2**20, databases=DATABASES)
    content = ContentStore(store, author="n", max_content_bytes=2**20, compress_min_bytes=2**30)
    acknowledged: dict[str, bytes] = {}

    async def fill():
        for i in range(200):
            body = os.urandom(100_000)
            address = f"ucxl://a:b@p:t/*^/f{i}"
            await content.put(address, body)
            acknowledged[address] = body

    with pytest.raises(StorageError) as info:
        trio.run(fill)
    assert "No space left" in str(info.value) or "full" in str(info.value)
    assert 5 < len(acknowledged) < 200
    for address, body in acknowledged.items():
        assert content.get(address)[1] == body
    store.close()
    again = Store(small_disk / "store", map_size=2**20, databases=DATABASES)
    reopened = ContentStore(again, author="n", max_content_bytes=2**20, compress_min_bytes=64)
    for address, body in acknowledged.items():
        assert reopened.get(address)[1] == body
    again.close()


def test_map_size_is_checked_against_the_platform_at_config_time(monkeypatch):
    monkeypatch.setattr(_platform, "pointer_bits", lambda: 64)  # as on x86-64 (armhf: 32 below)
    assert load_config(flags={"storage.map_size_mb": "4096"}, environ={})[
        "storage.map_size_mb"] == 4096
    monkeypatch.setattr(_platform, "pointer_bits", lambda: 32)  # the probe, as on armhf
    with pytest.raises(ConfigError) as info:
        load_config(flags={"storage.map_size_mb": "4096"}, environ={})
    message = str(info.value)
    assert "storage.map_size_mb" in message and "at most 1024 MiB" in message
    assert "32-bit" in message and "\n" not in message
    assert load_config(flags={"storage.map_size_mb": "1024"}, environ={})[
        "storage.map_size_mb"] == 1024


def test_map_size_over_the_32_bit_ceiling_is_exit_2_one_line(monkeypatch, tmp_path, capsys):
    from bzzz_edge.cli import main

    monkeypatch.setattr(_platform, "pointer_bits", lambda: 32)
    code = main(["run", "--data-dir", str(tmp_path / "d"), "--set", "storage.map_size_mb=3072"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "at most 1024 MiB on this 32-bit system" in err
