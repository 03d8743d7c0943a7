"""Memory banks: the store (entries + manifest, strict loading, atomic writes) and its checks.

``python -m memcollab_eval.bank check|diff|gate|attribute`` is the CI command
(:mod:`memcollab_eval.ci.bank_cli`); ``bank/__main__.py`` only hands over to it, so the store
itself imports nothing above it.
"""

from memcollab_eval.bank.store import (
    ENTRIES_FILE,
    MANIFEST_FILE,
    BankError,
    BankManifest,
    MemoryBank,
    MemoryEntry,
    entry_from_dict,
    load_bank,
    save_bank,
    serialize_entries,
    sha256_bytes,
)

__all__ = [
    "ENTRIES_FILE", "MANIFEST_FILE", "BankError", "BankManifest", "MemoryBank", "MemoryEntry", "entry_from_dict",
    "load_bank", "save_bank", "serialize_entries", "sha256_bytes",
]
