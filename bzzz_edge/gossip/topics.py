"""Topic names: the standard topics every node joins, dynamic ones, and what a name may be.
No I/O.

A topic name is 1 to ``MAX_TOPIC_LEN`` bytes of UTF-8 without control characters or spaces
(it appears in URLs, metrics labels and log lines). The standard topics are joined at start and
stay joined; ``issue_topic(id)`` names the dynamic per-issue topic (``bzzz/meta/issue/{id}``)
that nodes join and leave at run time.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from bzzz_edge.errors import BzzzError
from bzzz_edge.wire.constants import MAX_TOPIC_LEN

__all__ = [
    "CONTEXT_FEEDBACK",
    "COORDINATION",
    "META_DISCUSSION",
    "STANDARD_TOPICS",
    "TopicError",
    "check_topic",
    "issue_topic",
]

COORDINATION: Final = "bzzz/coordination/v1"
META_DISCUSSION: Final = "antennae/meta-discussion/v1"
CONTEXT_FEEDBACK: Final = "bzzz/context-feedback/v1"
STANDARD_TOPICS: Final = (COORDINATION, META_DISCUSSION, CONTEXT_FEEDBACK)
_ISSUE_PREFIX: Final = "bzzz/meta/issue/"


class TopicError(BzzzError, ValueError):
    """A topic name that cannot be used; the message says why."""


def check_topic(topic: object) -> str:
    """``topic`` if it is a usable topic name.

    Raises:
        TopicError: not a string, empty, too long, or with control characters or spaces.
    """
    if not isinstance(topic, str):
        raise TopicError(f"topic: expected a string, got {type(topic).__name__}")
    size = len(topic.encode("utf-8", "surrogatepass"))
    if not topic:
        raise TopicError("topic: empty name")
    if size > MAX_TOPIC_LEN:
        raise TopicError(f"topic {topic[:40]!r}...: {size} bytes, at most {MAX_TOPIC_LEN}")
    for position, char in enumerate(topic):
        category = unicodedata.category(char)
        if category[0] in "CZ":  # control, format, surrogate, unassigned; any space
            raise TopicError(f"topic {topic!r}: character {char!r} at {position} is not allowed "
                             "(no spaces or control characters)")
    return topic


def issue_topic(issue: int | str) -> str:
    """The dynamic topic of one issue's discussion: ``bzzz/meta/issue/{issue}``."""
    return check_topic(f"{_ISSUE_PREFIX}{issue}")
