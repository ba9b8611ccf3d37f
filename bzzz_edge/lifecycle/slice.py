"""Ask Linux's scheduler for a short time slice for the node's event loop. Does I/O (system
calls).

A node spends its time waiting for messages and answers each in well under a millisecond;
what a peer's request waits for on a busy machine is mostly the OS running the node again.
Since Linux 6.12 the fair scheduler (EEVDF) takes a time slice per thread
(``sched_setattr``'s ``sched_runtime``; the default is 0.7 ms times 1 + log2 of the CPUs,
1.4 ms on 2 cores): a thread that
asks for a short one, woken while another runs, gets the CPU that much sooner, and gives it
up sooner too when it runs long; its share of CPU does not change. Measured with 20 nodes
on 2 cores shared with other programs' CPU-bound work (benchmarks/bench_dht.py, load average
6 to 15, runs alternated): the nodes' mean run-queue wait per slice went from 1.8-2.2 ms to
0.7-0.9 ms, and the DHT's get p99 from 17-22 ms to 7-12 ms; their idle CPU did not change.

Only the policy's slice changes: a thread under another policy (batch, idle, real-time) is
left alone, its nice value is kept, and a kernel that does not know the field ignores it.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import struct
import sys

__all__ = ["SHORT_SLICE", "request_short_slice", "thread_slice"]

log = logging.getLogger(__name__)

#: The slice asked for, in seconds (the kernel takes 0.1 ms to 100 ms).
SHORT_SLICE = 0.0005

_SCHED_OTHER = 0
_RESET_ON_FORK = 0x01
# struct sched_attr (version 1: with utilisation clamps): size, policy, flags, nice, priority,
# runtime, deadline, period, util_min, util_max.
_ATTR = struct.Struct("=IIQiIQQQII")
_SYSCALLS = {  # sched_setattr, sched_getattr
    "x86_64": (314, 315),
    "aarch64": (274, 275),
    "arm64": (274, 275),
    "riscv64": (274, 275),
}


def _libc_and_numbers() -> tuple[ctypes.CDLL, int, int] | None:
    numbers = _SYSCALLS.get(platform.machine()) if sys.platform == "linux" else None
    if numbers is None:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True), *numbers
    except OSError:
        return None


def _get_attr(libc: ctypes.CDLL, number: int) -> tuple[int, ...] | None:
    buffer = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(number, 0, buffer, _ATTR.size, 0) != 0:
        return None
    return _ATTR.unpack(buffer.raw)


def thread_slice() -> float | None:
    """The calling thread's time slice in seconds (the kernel's default unless one was asked
    for), or None where it cannot be read."""
    found = _libc_and_numbers()
    attr = _get_attr(found[0], found[2]) if found is not None else None
    return None if attr is None else attr[5] / 1e9


def request_short_slice(seconds: float = SHORT_SLICE) -> bool:
    """Ask for a ``seconds`` slice for the calling thread (and the threads it starts later);
    True if the kernel took the request. Never raises: a system without it runs as before."""
    found = _libc_and_numbers()
    if found is None:
        return False
    libc, set_number, get_number = found
    attr = _get_attr(libc, get_number)
    if attr is None or attr[1] != _SCHED_OTHER:  # not readable, or a policy chosen for us
        return False
    _, policy, flags, nice, priority, _, deadline, period, util_min, util_max = attr
    # Of the flags, "reset on fork" is kept; the utilisation clamps read back are not set
    # again (that needs their own flags), so they stay as they are.
    request = _ATTR.pack(_ATTR.size, policy, flags & _RESET_ON_FORK, nice, priority,
                         int(seconds * 1e9), deadline, period, util_min, util_max)
    buffer = ctypes.create_string_buffer(request, _ATTR.size)
    if libc.syscall(set_number, 0, buffer, 0) != 0:
        log.debug("no short time slice: sched_setattr failed (errno %d)", ctypes.get_errno())
        return False
    return True
