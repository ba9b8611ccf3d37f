"""The data dir: trust checks in the manner of OpenSSH's StrictModes, and the one-node lock.

Does I/O (stat, open, flock).

- ``check_data_dir``: refuse a data dir that others may write or that another user owns, since
  whoever can write there can swap our keys or config; the message says how to fix it.
- ``DataDirLock``: an exclusive ``flock`` on ``<data dir>/node.lock`` held for the node's
  lifetime, so two nodes never share one identity. The kernel drops the lock when the process
  dies, even on kill -9, so a stale lock never blocks a restart; the file keeps the holder's PID
  only to name it in the error.
- ``create_private``: create a file the node writes, 0600, never through a symlink.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from ..errors import BzzzError

__all__ = ["LOCK_FILE", "RUNTIME_FILE", "DataDirLock", "check_data_dir", "create_private",
           "ensure_data_dir", "hand_over"]

LOCK_FILE = "node.lock"
RUNTIME_FILE = "node.json"  # in the data dir while the node runs: pid and API URL


def _owner_ok(uid: int) -> bool:
    # Like StrictModes: our own files, or root's (a root-owned dir a service user may use).
    return uid in (os.geteuid(), 0)


def ensure_data_dir(path: Path, *, managing: bool = False) -> int:
    """Create the data dir (0700) if it is missing, then check it can be trusted.

    Returns the uid that owns it (see ``check_data_dir`` for ``managing``).

    Raises:
        BzzzError: it cannot be created, is not a directory, or fails ``check_data_dir``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise BzzzError(f"data dir {path} exists but is not a directory") from None
    except OSError as exc:
        raise BzzzError(f"cannot create data dir {path}: {exc.strerror}") from None
    return check_data_dir(path, managing=managing)


def check_data_dir(path: Path, *, managing: bool = False) -> int:
    """Refuse a data dir that is missing, not a directory, writable by others, or not ours.

    ``managing``: root may prepare a data dir that another user owns (the systemd service's
    dynamic user); the caller then hands what it writes to that owner. Returns the owner's uid.

    Raises:
        BzzzError: one line saying what is wrong and how to fix it.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BzzzError(f"data dir {path} does not exist; run `bzzz-edge init` first") from None
    except OSError as exc:
        raise BzzzError(f"cannot access data dir {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BzzzError(f"data dir {path} is not a directory")
    if not _owner_ok(st.st_uid) and not (managing and os.geteuid() == 0):
        raise BzzzError(
            f"data dir {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}); "
            f"run `chown -R {os.geteuid()} {path}` or use another --data-dir"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BzzzError(
            f"data dir {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 700 {path}`"
        )
    return st.st_uid


def hand_over(paths: list[Path], owner: int) -> None:
    """Give files root wrote in another user's data dir to that user (see ``managing``)."""
    if owner == os.geteuid() or os.geteuid() != 0:
        return
    for path in paths:
        if path.exists() and not path.is_symlink():
            os.chown(path, owner, path.parent.stat().st_gid)


def create_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` as a new 0600 file, never following a symlink.

    With ``replace`` an existing regular file is replaced atomically (through a temporary file
    and rename, which replaces a symlink itself rather than its target).

    Raises:
        BzzzError: the file exists (and ``replace`` is off), is a symlink, or cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace else path
    if not replace and os.path.lexists(path):
        kind = "a symlink" if path.is_symlink() else "already there"
        raise BzzzError(f"{path} is {kind}; refusing to write through it (remove it first)")
    try:
        fd = os.open(target, flags, 0o600)
    except OSError as exc:
        raise BzzzError(f"cannot create {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if replace:
            os.replace(target, path)
    except OSError as exc:
        if replace:
            target.unlink(missing_ok=True)
        raise BzzzError(f"cannot write {path}: {exc.strerror}") from None


class DataDirLock:
    """An exclusive lock on a data dir, held until ``release`` or the process ends."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, *, purpose: str = "run a node") -> DataDirLock:
        """Take the lock, or fail at once naming the PID that holds it.

        Raises:
            BzzzError: another process holds the lock, or the lock file cannot be opened.
        """
        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            what = "is a symlink" if exc.errno == errno.ELOOP else exc.strerror
            raise BzzzError(f"cannot open lock file {path}: {what}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise BzzzError(
                f"cannot {purpose}: data dir {data_dir} is in use by the node with PID {holder}; "
                "stop it first, or use another --data-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise BzzzError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(data_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays, harmlessly."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
