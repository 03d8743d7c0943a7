"""Leaderboards over finished runs, and per-entry attribution of what memory fixed or broke.

records (types) <- runs (reading lm-eval's files) <- stats (CIs, paired deltas) <- board
(grouping and table rows) <- render (md/csv/html/png and the command); attribution reads the
same runs for one bank.
"""

from memcollab_eval.leaderboard.attribution import Attribution, AttributionError, EntryEffect, attribute
from memcollab_eval.leaderboard.board import build_leaderboard
from memcollab_eval.leaderboard.records import (
    AVERAGE,
    NO_MEMORY,
    Leaderboard,
    LeaderboardError,
    LeaderboardRow,
    Run,
    Sample,
    TaskResult,
)
from memcollab_eval.leaderboard.render import write_all
from memcollab_eval.leaderboard.runs import find_results, hydra_config, load_run

__all__ = [
    "AVERAGE", "NO_MEMORY", "Attribution", "AttributionError", "EntryEffect", "Leaderboard", "LeaderboardError",
    "LeaderboardRow", "Run", "Sample", "TaskResult", "attribute", "build_leaderboard", "find_results",
    "hydra_config", "load_run", "write_all",
]
