"""python -m memcollab_eval.bank check|diff|gate|attribute|retire|supersede|versions|audit: an alias of the CI command."""

import sys

from memcollab_eval.ci.bank_cli import main

if __name__ == "__main__":
    sys.exit(main())
