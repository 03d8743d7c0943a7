"""python -m memcollab_eval.ci: the same command as python -m memcollab_eval.bank."""

import sys

from memcollab_eval.ci.bank_cli import main

if __name__ == "__main__":
    sys.exit(main())
