"""Availability, roles and capabilities of every node: the broadcast and the directory. No I/O.

Each node broadcasts its availability (load, memory, capacity, the tasks it holds, its name)
on ``bzzz/agents/v1`` every ``agent.availability_interval`` seconds and on change; its roles
(with their directory-scope patterns) and capabilities ride along only when they change, when
a node asks for them, or when a node joins (``_broadcast``). Every node keeps a bounded
directory of what the others said (``_directory``), one entry per signed origin. ``_core``
(``AgentsCore``) drives both from events (``handle``/``tick``/``next_deadline``). The messages
and their checks are in ``_messages``, the JSON view in ``_views``; the trio shell is
``service`` (``AgentService``), its construction in a node ``wiring``.
"""

from __future__ import annotations

from bzzz_edge.agents._broadcast import Broadcaster, Local, WantTimer
from bzzz_edge.agents._core import (
    AgentsCore,
    MemberChanged,
    MembersResync,
    Publish,
    Received,
    Rejected,
    Sample,
    Sampled,
)
from bzzz_edge.agents._directory import Directory, Entry
from bzzz_edge.agents._messages import (
    MAX_MESSAGE_BYTES,
    MAX_TASK_IDS,
    MAX_WANTED,
    Availability,
    Refusal,
    Refused,
    Want,
    decode,
    encode_availability,
    encode_want,
    profile_digest,
)
from bzzz_edge.agents._views import entry_view

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_TASK_IDS",
    "MAX_WANTED",
    "AgentsCore",
    "Availability",
    "Broadcaster",
    "Directory",
    "Entry",
    "Local",
    "MemberChanged",
    "MembersResync",
    "Publish",
    "Received",
    "Refusal",
    "Refused",
    "Rejected",
    "Sample",
    "Sampled",
    "Want",
    "WantTimer",
    "decode",
    "encode_availability",
    "encode_want",
    "entry_view",
    "profile_digest",
]
