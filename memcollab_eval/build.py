"""python -m memcollab_eval.build: an alias of :mod:`memcollab_eval.construct` (bank construction).

A module, not a package: tools skip folders named ``build`` (ruff, black, isort, pytest's
collection, the common .gitignore), so the pipeline lives in ``construct/`` and this name only
keeps the documented command and imports working.
"""

from memcollab_eval.construct import BuildConf, run_build
from memcollab_eval.construct.cli import main

__all__ = ["BuildConf", "main", "run_build"]

if __name__ == "__main__":
    main()
