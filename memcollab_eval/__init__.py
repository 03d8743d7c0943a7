"""memcollab-eval: measure what a shared memory bank (MemCollab) does for LLMs on math and code."""

__version__ = "0.1.0"

__all__ = ["__version__"]
