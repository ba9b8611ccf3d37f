"""Commands that work on this machine's data dir: init, run, id, version, config, network-key.

Does I/O (the data dir, key files). Each returns an exit code; user errors raise ``BzzzError``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .. import __version__, _native, signatures
from ..config import CONFIG_FILE_NAME, Config, config_template
from ..errors import BzzzError
from ..identity import (
    Identity,
    generate_network_key,
    load_network_key,
    network_fingerprint,
    write_network_key,
)
from ..lifecycle.datadir import (
    LOCK_FILE,
    DataDirLock,
    check_data_dir,
    create_private,
    ensure_data_dir,
    hand_over,
)
from ..logs import setup_logging
from ._common import config_from

__all__ = ["cmd_config", "cmd_id", "cmd_init", "cmd_network_key_export", "cmd_run",
           "cmd_version", "init_node"]

log = logging.getLogger(__name__)


def init_node(config: Config, *, force: bool, network_key_file: str | None,
              lock: DataDirLock | None = None) -> Identity:
    """Create the data dir, identity, network key and config file (under the data-dir lock).

    Raises:
        BzzzError: the data dir is untrusted or in use, an identity exists (without ``force``),
            the key file to join is bad, or a file cannot be written.
    """
    data_dir = config.data_dir
    owner = ensure_data_dir(data_dir, managing=lock is None)
    held = lock or DataDirLock.acquire(
        data_dir, purpose="replace the identity" if force else "initialise the node")
    config_path = config.file or data_dir / CONFIG_FILE_NAME
    try:
        if config.identity_file.exists() and not force:
            raise BzzzError(
                f"{config.identity_file} already exists (node {_existing_id(config)}); "
                "use --force to replace this node's identity"
            )
        # Read the key to join before writing anything, so a wrong file leaves nothing behind.
        key = (load_network_key(Path(network_key_file), check_mode=False)
               if network_key_file else None)
        identity = Identity.generate()
        identity.save(config.identity_file)
        if key is not None:
            write_network_key(config.network_key_file, key)
        elif not config.network_key_file.exists():
            write_network_key(config.network_key_file, generate_network_key())
        if not config_path.exists():
            # 0600 (it may come to hold the API token); a dangling symlink is refused.
            create_private(config_path, config_template().encode())
        return identity
    finally:
        # root preparing the service's data dir: the files are the service user's.
        hand_over([config.identity_file, config.network_key_file, config_path,
                   data_dir / LOCK_FILE], owner)
        if lock is None:
            held.release()


def _existing_id(config: Config) -> str:
    try:
        return Identity.load(config.identity_file).display_id
    except BzzzError:
        return "unreadable"


def cmd_init(args: argparse.Namespace) -> int:
    config = config_from(args)
    identity = init_node(config, force=args.force, network_key_file=args.network_key_file)
    # Unchecked: init just wrote it (and may have handed it to the service's user).
    fingerprint = network_fingerprint(load_network_key(config.network_key_file, check_mode=False))
    print(f"node ID        {identity.display_id}")
    print(f"data dir       {config.data_dir}")
    print(f"network        {fingerprint} (key in {config.network_key_file})")
    print("Other nodes join this network with: bzzz-edge init --network-key-file <copy of the key>")
    print("Start the node with: bzzz-edge run")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = config_from(args)
    setup_logging(config["log.level"], config["log.format"], config.secrets())
    from ..node import Node, run_node  # trio and friends load only for commands that need them

    if args.init:
        ensure_data_dir(config.data_dir)
    else:
        check_data_dir(config.data_dir)
    # One node per data dir: a second `run` stops here, naming the PID of the first.
    lock = DataDirLock.acquire(config.data_dir)
    if args.init and not config.identity_file.exists():
        identity = init_node(config, force=False, network_key_file=None, lock=lock)
        log.info("initialised a new node %s in %s", identity.display_id, config.data_dir)
        config = config_from(args)  # pick up the config file init just wrote
    return run_node(Node.load(config, lock=lock))


def cmd_version(args: argparse.Namespace) -> int:
    impls = _native.implementations()
    print(f"bzzz-edge {__version__} (Python {sys.version.split()[0]})")
    forced = " (forced by BZZZ_EDGE_PURE=1)" if _native.FORCED_PURE else ""
    for name, impl in impls.items():
        print(f"  {name:<6} {impl}{forced if impl == 'pure' else ''}")
    print(f"  Ed25519 checks: {signatures.BACKEND}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "validate":
        return _config_validate(args)
    if args.file:
        raise BzzzError("config show takes no FILE; use --config FILE")
    config = config_from(args)
    print(f"# config file: {config.file or 'none'}")
    rows = config.describe()
    width = max(len(key) + len(value) for key, value, _ in rows) + 3
    for key, value, source in rows:
        print(f"{key} = {value}".ljust(width) + f"  # {source}")
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    """Check a config file (and the environment and flags on top) without starting anything."""
    path = args.file or args.config
    if path is not None and not Path(path).exists():
        raise BzzzError(f"{path}: no such config file")
    if path is None:
        config = config_from(args)
    else:
        args_without = argparse.Namespace(**{**vars(args), "config": path})
        config = config_from(args_without)
    if config.file is None:
        print("no config file; defaults, environment and flags are valid")
        return 0
    from_file = sum(1 for _, _, source in config.describe() if source.startswith("file "))
    print(f"{config.file}: valid ({from_file} keys set in the file)")
    return 0


def cmd_network_key_export(args: argparse.Namespace) -> int:
    config = config_from(args)
    key = load_network_key(config.network_key_file)
    if not args.output:
        sys.stdout.write(key.hex() + "\n")
        return 0
    output = Path(args.output)
    own = [config.identity_file, config.network_key_file]
    if any(_same_file(output, path) for path in own):
        raise BzzzError(f"{output} is one of this node's own key files; choose another --output")
    if os.path.lexists(output) and not args.force:
        raise BzzzError(f"{output} already exists; use --force to replace it")
    write_network_key(output, key)
    print(f"network key written to {output} (mode 0600); copy it to the other nodes")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def cmd_id(args: argparse.Namespace) -> int:
    print(Identity.load(config_from(args).identity_file).display_id)
    return 0
