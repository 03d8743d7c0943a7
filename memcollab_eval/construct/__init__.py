"""Bank construction: trajectories from several models -> verification -> contrastive distillation.

Stages (each a module): pools (training problems, leakage check), preference (which trajectory
is preferred), distill (the summarizer prompt and its parser), entry_lint and dedupe (the gates),
validate (the held-out gate), records (the stages' typed JSONL records), pipeline (the stages in
order, resumable). Run it with ``python -m memcollab_eval.build``; ``run_build(cfg)`` is the
library entry.
"""

from memcollab_eval.construct.config import BuildConf
from memcollab_eval.construct.pipeline import run_build

__all__ = ["BuildConf", "run_build"]
