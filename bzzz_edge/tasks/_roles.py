"""Roles, a claimant's profile and claim eligibility. No I/O.

A role is a name with directory-scope patterns (shell globs, ``fnmatch`` rules: ``*`` also
matches ``/``, so ``src/**`` and ``src/*`` both cover everything under ``src/``). Four roles
are built in; the config adds or overrides others (``agent.custom_roles``, each
``"NAME=PATTERN PATTERN ..."``).

A claim carries the claimant's ``Profile`` (its roles with their patterns, its capabilities,
its capacity), so every node decides eligibility from the command alone, the same way:

- role: a task that names a role needs a claimant holding it;
- capabilities: every capability the task requires is among the claimant's;
- capacity: the claimant holds fewer active tasks than its capacity (counted from the log);
- scope: each of the task's scopes matches a pattern of the task's role as the claimant
  defines it (of any of its roles when the task names none). A task scope that is itself a
  glob is covered when the pattern matches it as text (``src/api/**`` by ``src/**``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from ._model import LIMITS, Limits, Reason, Task

__all__ = ["BUILTIN_ROLES", "Profile", "check_eligible", "parse_custom_roles", "resolve_roles"]

BUILTIN_ROLES: Final[Mapping[str, tuple[str, ...]]] = {
    "backend": ("backend/*", "server/*", "api/*", "src/*", "lib/*", "db/*", "migrations/*",
                "*.py", "*.go", "*.rs", "*.java", "*.sql"),
    "frontend": ("frontend/*", "web/*", "ui/*", "client/*", "public/*", "static/*",
                 "assets/*", "*.js", "*.ts", "*.tsx", "*.jsx", "*.css", "*.html", "*.vue"),
    "devops": ("deploy/*", "infra/*", "ops/*", "ci/*", ".github/*", "docker/*", "k8s/*",
               "terraform/*", "Dockerfile", "*Dockerfile", "Makefile", "*.yml", "*.yaml",
               "*.toml", "*.tf"),
    "qa": ("tests/*", "test/*", "spec/*", "e2e/*", "*test_*", "*_test.*", "*.spec.*"),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """What a claimant says of itself in a claim: roles with patterns, capabilities, capacity."""

    roles: Mapping[str, tuple[str, ...]]
    capabilities: frozenset[str]
    capacity: int

    def encode(self) -> dict[str, Any]:
        return {"roles": {name: list(p) for name, p in sorted(self.roles.items())},
                "capabilities": sorted(self.capabilities), "capacity": self.capacity}

    @classmethod
    def decode(cls, raw: Any, limits: Limits = LIMITS) -> Profile:
        """Raises: ValueError or TypeError for a malformed or over-long profile."""
        if not isinstance(raw, dict):
            raise TypeError("profile: not a map")
        roles, caps, capacity = raw["roles"], raw["capabilities"], raw["capacity"]
        if not isinstance(roles, dict) or not isinstance(caps, list | tuple):
            raise TypeError("profile: roles is a map, capabilities a list")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise TypeError("profile: capacity is a whole number")
        if len(roles) > limits.roles or len(caps) > limits.capabilities:
            raise ValueError("profile: too many roles or capabilities")
        out: dict[str, tuple[str, ...]] = {}
        for name, patterns in roles.items():
            if (not isinstance(name, str) or not isinstance(patterns, list | tuple)
                    or not all(isinstance(p, str) for p in patterns)):
                raise TypeError("profile: a role is a name and a list of patterns")
            if (len(name) > limits.role or len(patterns) > limits.patterns
                    or any(len(p) > limits.scope for p in patterns)):
                raise ValueError("profile: a role name or pattern is too long")
            out[name] = tuple(patterns)
        if not all(isinstance(c, str) and len(c) <= limits.capability for c in caps):
            raise ValueError("profile: a capability is not a short string")
        return cls(out, frozenset(caps), capacity)


def parse_custom_roles(items: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``["docs=docs/* *.md", ...]`` as a mapping of role to patterns.

    Raises:
        ValueError: an item without ``NAME=`` or without patterns.
    """
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        patterns = tuple(rest.split())
        if not sep or not name.strip() or not patterns:
            raise ValueError(f"{item!r}: expected NAME=PATTERN [PATTERN ...]")
        out[name.strip()] = patterns
    return out


def resolve_roles(names: Iterable[str], custom: Mapping[str, tuple[str, ...]]
                  ) -> dict[str, tuple[str, ...]]:
    """The patterns of each role in ``names``: custom definitions first, then built-in ones.

    Raises:
        ValueError: a role that is neither built in nor defined in ``custom``.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        if name in custom:
            out[name] = custom[name]
        elif name in BUILTIN_ROLES:
            out[name] = BUILTIN_ROLES[name]
        else:
            known = ", ".join(sorted({*BUILTIN_ROLES, *custom}))
            raise ValueError(f"role {name!r} is neither built in nor in agent.custom_roles "
                             f"(known: {known})")
    return out


def check_eligible(task: Task, profile: Profile, holding: int) -> tuple[Reason, str] | None:
    """Why ``profile`` (holding ``holding`` active tasks) may not claim ``task``, or None."""
    if task.role and task.role not in profile.roles:
        return Reason.ROLE, f"the task needs role {task.role!r}"
    missing = sorted(set(task.capabilities) - profile.capabilities)
    if missing:
        return Reason.CAPABILITIES, f"missing capabilities: {', '.join(missing)}"
    if holding >= profile.capacity:
        return Reason.CAPACITY, f"holds {holding} tasks, capacity {profile.capacity}"
    if task.scopes:
        patterns = (profile.roles[task.role] if task.role
                    else tuple(p for ps in profile.roles.values() for p in ps))
        outside = [s for s in task.scopes if not any(fnmatchcase(s, p) for p in patterns)]
        if outside:
            return Reason.SCOPE, f"scopes outside the claimant's roles: {', '.join(outside)}"
    return None
