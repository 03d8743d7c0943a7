"""Bank building: trajectories from several models -> verification -> contrastive distillation.

Run it with ``python -m memcollab_eval.build``; ``run_build(cfg)`` is the library entry.
"""

from memcollab_eval.build.build_config import BuildConf
from memcollab_eval.build.pipeline import run_build

__all__ = ["BuildConf", "run_build"]
