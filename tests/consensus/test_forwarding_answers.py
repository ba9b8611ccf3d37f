"""A coordinator's refusal as the forwarding node reads it (``forwarding.error_answer`` /
``read_answer``): the same reason, detail and coordinator, said once."""

from __future__ import annotations

import pytest

from bzzz_edge.consensus.forwarding import answer_body, error_answer, read_answer
from bzzz_edge.consensus.proposals import Failure, ProposalError
from bzzz_edge.ids import format_node_id

COORDINATOR, ASKED = b"c" * 32, b"a" * 32


@pytest.mark.parametrize("reason", [Failure.NO_QUORUM, Failure.TIMEOUT, Failure.REFUSED,
                                    Failure.LOST])
def test_a_forwarded_refusal_reads_as_the_coordinators_own(reason: Failure) -> None:
    original = ProposalError(reason, "not committed within 2s", COORDINATOR)
    with pytest.raises(ProposalError) as read:
        read_answer(answer_body(error_answer(original)), ASKED)
    assert read.value.reason is reason and read.value.leader == COORDINATOR
    assert str(read.value) == str(original)  # once "proposal ...:", once the coordinator
    assert str(read.value).count(format_node_id(COORDINATOR)) == 1


def test_not_leader_means_follow_the_next_coordinator() -> None:
    answer = answer_body(error_answer(ProposalError(Failure.NOT_LEADER, "not me", COORDINATOR)))
    assert read_answer(answer, ASKED) is None
