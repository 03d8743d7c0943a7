"""The CI commands: ``python -m memcollab_eval.bank check | diff | gate | attribute`` (bank_cli)."""
