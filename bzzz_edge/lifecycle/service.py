"""The systemd unit: rendering it for this installation, and where a service can run from.

No I/O beyond reading the packaged template. The unit runs as a dynamic user with
``ProtectHome=yes`` and ``PrivateTmp=yes``, so a program installed in a home directory or under
/tmp is invisible to it (and a home directory is usually 0700 as well): ``location_problem``
says so before a unit is installed that could never start, and ``data_dir_problem`` does the
same for a data dir the service could not keep its state in. The documented place is a venv in
/opt/bzzz-edge, keeping its state in /var/lib/bzzz-edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_DATA_DIR",
    "UNIT_NAME",
    "data_dir_problem",
    "limit_nofile",
    "location_problem",
    "render_unit",
]

UNIT_NAME = "bzzz-edge.service"
DEFAULT_DATA_DIR = "/var/lib/bzzz-edge"
_TEMPLATE_EXEC = "/opt/bzzz-edge/bin/bzzz-edge"
# Hidden from the service by its hardening (and /tmp is cleared at boot besides).
_HIDDEN = {
    "/home": "ProtectHome=yes hides home directories",
    "/root": "ProtectHome=yes hides /root",
    "/run/user": "ProtectHome=yes hides /run/user",
    "/tmp": "PrivateTmp=yes gives the service its own empty /tmp",
    "/var/tmp": "PrivateTmp=yes gives the service its own empty /var/tmp",
    "/dev/shm": "the service cannot rely on /dev/shm",
}
# Descriptors besides peer connections: API clients, LMDB, mDNS, logs, the notify socket.
_SPARE_FDS = 512


def limit_nofile(max_connections: int, handshakes: int | None = None) -> int:
    """A ``LimitNOFILE`` covering ``network.max_connections``, as many handshakes in flight
    (by default) and the node's other descriptors; never below systemd's usual 4096."""
    in_flight = max_connections if handshakes is None else handshakes
    return max(4096, max_connections + in_flight + _SPARE_FDS)


def _hidden(path: Path) -> tuple[str, str] | None:
    """The hidden place ``path`` is in, and why the service cannot see it; None if it can."""
    for prefix, why in _HIDDEN.items():
        if path == Path(prefix) or Path(prefix) in path.parents:
            return prefix, why
    return None


def location_problem(paths: Iterable[Path]) -> str | None:
    """Why a service could not run a program from ``paths`` (its files), or None if it can."""
    for path in paths:
        hidden = _hidden(path)
        if hidden:
            return (f"{path} is under {hidden[0]}, which the service cannot see ({hidden[1]}); "
                    "install bzzz-edge in /opt/bzzz-edge: sudo python3 -m venv "
                    "/opt/bzzz-edge && sudo /opt/bzzz-edge/bin/pip install bzzz-edge")
    return None


def data_dir_problem(data_dir: Path) -> str | None:
    """Why a service could not keep its state in ``data_dir`` (absolute), or None if it can."""
    hidden = _hidden(data_dir)
    if hidden is None:
        return None
    return (f"--data-dir {data_dir} is under {hidden[0]}, which the service cannot see "
            f"({hidden[1]}); leave out --data-dir to keep the node's state in "
            f"{DEFAULT_DATA_DIR}, or choose a directory outside "
            f"{', '.join(_HIDDEN)} (e.g. /srv/bzzz-edge)")


def render_unit(exec_path: str, *, data_dir: str = DEFAULT_DATA_DIR, nofile: int = 4096) -> str:
    """The packaged unit for a program at ``exec_path`` keeping its state in ``data_dir``."""
    unit = resources.files("bzzz_edge").joinpath("data/bzzz-edge.service").read_text()
    unit = unit.replace(_TEMPLATE_EXEC, exec_path)
    unit = unit.replace("LimitNOFILE=4096", f"LimitNOFILE={nofile}")
    if data_dir != DEFAULT_DATA_DIR:
        # Outside StateDirectory the data dir is read-only under ProtectSystem=strict.
        unit = unit.replace(f"--data-dir {DEFAULT_DATA_DIR}", f"--data-dir {data_dir}")
        unit = unit.replace("StateDirectoryMode=0700\n",
                            f"StateDirectoryMode=0700\nReadWritePaths={data_dir}\n")
    return unit
