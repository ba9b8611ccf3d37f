"""Lifeguard suspicion timeouts."""

from __future__ import annotations

import itertools

import pytest

from bzzz_edge.membership._suspicion import Suspicion, confirmation_count, suspicion_deadline

from .conftest import nid


def test_deadline_moves_from_max_to_min_as_confirmations_arrive() -> None:
    deadlines = [suspicion_deadline(10.0, 1.0, 6.0, 3, c) for c in range(5)]
    assert deadlines[0] == pytest.approx(16.0)
    assert deadlines[3] == pytest.approx(11.0) and deadlines[4] == pytest.approx(11.0)
    assert all(later < earlier for earlier, later in itertools.pairwise(deadlines[:4]))
    # Logarithmic: the first confirmation buys the most (memberlist's formula).
    assert deadlines[1] == pytest.approx(16.0 - 5.0 * 0.5)


def test_no_expected_confirmations_means_the_minimum_applies() -> None:
    assert suspicion_deadline(2.0, 1.0, 6.0, 0, 0) == 3.0
    assert confirmation_count(4, 10) == 2
    assert confirmation_count(4, 3) == 0  # too few others to confirm
    s = Suspicion(nid(1), nid(2), 0.0, 1.0, 4.0, 0)
    assert s.deadline == 1.0 and not s.confirm(nid(3))


def test_only_new_sources_confirm_and_only_up_to_k() -> None:
    s = Suspicion(nid(1), nid(2), 0.0, 1.0, 4.0, 2)
    assert not s.confirm(nid(2))  # the original reporter
    assert s.confirm(nid(3)) and not s.confirm(nid(3))
    assert s.confirm(nid(4)) and s.deadline == pytest.approx(1.0)
    assert not s.confirm(nid(5)) and s.confirmations == 2
