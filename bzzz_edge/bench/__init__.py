"""``bzzz-edge bench``: coordination latency measured as users measure it. Uses trio.

``_stats`` is the sans-IO part (percentiles, summaries, the terminal histogram); ``_http`` the
kept-alive API connections and event streams; ``_rounds`` the rounds (at rest, contested,
across a kill -9 of the coordinator); ``_cluster`` the local cluster and the idle cost.
"""

from ._cluster import Usage, form_cluster, idle_usage, last_lines
from ._rounds import BenchError, RoundResult, Rounds, Target
from ._stats import Summary, histogram, percentile, summarize

__all__ = ["BenchError", "RoundResult", "Rounds", "Summary", "Target", "Usage", "form_cluster",
           "histogram", "idle_usage", "last_lines", "percentile", "summarize"]
