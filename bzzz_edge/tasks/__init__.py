"""Tasks and claims decided by the decision log. No I/O.

A task is announced, claimed by exactly one eligible node, progressed, completed or failed,
and released when its owner gives it up, dies or misses its deadline. The announce travels
over gossip and is kept by every node (``_announced``) until the first claim carries it into
the log; every other change is a command of the replicated decision log (``_commands``),
applied in log order by the same sans-IO state machine on every node (``_machine``), so every
node reaches the same verdict and learns the winner of each claim from the log. Each command
is signed by the node it names (its Ed25519 identity key, for this network) and carries what
the machine needs to refuse a replay; the coordinator's releases and expiries must come from
a voter of the log's configuration (see ``_machine``). The model and its bounds are in
``_model``, roles and claim eligibility in ``_roles``, the coordinator's choice of releases
in ``_releases``. The shell is ``service`` (persisting, publishing events, the coordinator's
releases) with ``_proposer`` (signing, proposing again what a coordinator's failure left
undecided, waiting for this node's machine to apply; what a command applied twice did is
``_retry``'s), the LMDB side ``storage``.
"""

from __future__ import annotations

from bzzz_edge.tasks._commands import (
    DOMAIN,
    MARKER,
    VERSION,
    Command,
    Refused,
    Signer,
    decode,
    is_ours,
    sign,
)
from bzzz_edge.tasks._machine import Outcome, TaskMachine
from bzzz_edge.tasks._model import (
    ACTIVE,
    CLAIMABLE,
    FINISHED,
    LIMITS,
    HistoryItem,
    Limits,
    Reason,
    State,
    Task,
)
from bzzz_edge.tasks._roles import (
    BUILTIN_ROLES,
    Profile,
    check_eligible,
    parse_custom_roles,
    resolve_roles,
)

__all__ = [
    "ACTIVE",
    "BUILTIN_ROLES",
    "CLAIMABLE",
    "DOMAIN",
    "FINISHED",
    "LIMITS",
    "MARKER",
    "VERSION",
    "Command",
    "HistoryItem",
    "Limits",
    "Outcome",
    "Profile",
    "Reason",
    "Refused",
    "Signer",
    "State",
    "Task",
    "TaskMachine",
    "check_eligible",
    "decode",
    "is_ours",
    "parse_custom_roles",
    "resolve_roles",
    "sign",
]
