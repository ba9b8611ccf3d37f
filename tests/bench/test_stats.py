"""The benchmark's statistics: nearest-rank percentiles, summaries, the terminal histogram."""

from __future__ import annotations

import pytest

from bzzz_edge.bench import histogram, percentile, summarize


def test_percentile_is_the_nearest_rank():
    samples = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 90) == 90.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0


@pytest.mark.parametrize("samples, q", [([], 50), ([1.0], 0), ([1.0], 101)])
def test_percentile_refuses_no_samples_and_out_of_range(samples, q):
    with pytest.raises(ValueError):
        percentile(samples, q)


def test_summary_has_the_percentiles_max_and_count():
    summary = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.as_dict() == {"rounds": 5, "p50_ms": 3.0, "p90_ms": 100.0, "p99_ms": 100.0,
                                 "max_ms": 100.0, "min_ms": 1.0, "mean_ms": 22.0}
    assert "p50 3.0 ms" in summary.line()
    with pytest.raises(ValueError):
        summarize([])


def test_histogram_counts_every_sample_once_in_one_line_a_bin():
    samples = [1.0, 1.5, 2.0, 2.0, 3.0, 9.0, 9.5]
    lines = histogram(samples, bins=4, width=20)
    assert len(lines) == 4
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert sum(counts) == len(samples)
    assert counts[0] == 5 and counts[-1] == 2  # bins of 2.125 ms from 1.0
    assert max(line.count("█") for line in lines) == 20  # the fullest bin fills the width


def test_histogram_bins_a_long_tail_geometrically():
    samples = [1.0] * 50 + [1000.0]
    lines = histogram(samples, bins=3, width=10)
    lows = [float(line.split(" - ")[0]) for line in lines]
    assert lows == pytest.approx([1.0, 10.0, 100.0])


def test_histogram_of_one_value_and_a_sliver_for_a_rare_bin():
    assert histogram([5.0, 5.0], bins=3)[0].endswith(" 2")
    lines = histogram([1.0] * 1000 + [2.0], bins=2, width=10)
    assert "▏" in lines[1] and lines[1].endswith(" 1")
    with pytest.raises(ValueError):
        histogram([])
