"""The one usage error and the exit codes every command shares.

0 = done (or the check passed), 1 = a check or the gate failed / the job itself failed,
2 = could not run (bad configuration or input), reported in one line without a traceback.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A configuration or input the command cannot run with; reported without a traceback, exit code 2."""
