"""Models for the evaluation: embedded CPU GGUF models and the in-process llama.cpp lm-eval backend.

Importing this package registers the lm-eval model name ``llama_cpp`` as a lazy placeholder, so
``lm_eval.simple_evaluate(model="llama_cpp", ...)`` works without importing llama-cpp-python
until a model is actually built (llama-cpp-python is the optional ``cpu`` extra).
"""

from __future__ import annotations

from typing import Any

# Re-exported lazily (PEP 562) so that ``python -m memcollab_eval.models.embedded`` does not find
# its own module already imported by this package, which runpy warns about.
_EMBEDDED_EXPORTS = (
    "EMBEDDED_MODELS",
    "ChecksumMismatchError",
    "EmbeddedModel",
    "EmbeddedModelError",
    "MissingPackagesError",
    "cache_dir",
    "ensure_model",
    "resolve_model",
)

__all__ = [*_EMBEDDED_EXPORTS, "CHAT_COMPLETIONS_MODEL_NAME", "LLAMA_CPP_MODEL_NAME", "LlamaCppLM",
           "register_lm_eval_models"]

LLAMA_CPP_MODEL_NAME = "llama_cpp"
_LLAMA_CPP_TARGET = "memcollab_eval.models.llamacpp_lm:LlamaCppLM"
# lm-eval's local-chat-completions with neutral sampling settings (conf/target/openai_compatible.yaml)
CHAT_COMPLETIONS_MODEL_NAME = "memcollab_chat_completions"
_CHAT_COMPLETIONS_TARGET = "memcollab_eval.models.chat_completions:NeutralChatCompletion"


def register_lm_eval_models() -> None:
    """Register ``llama_cpp`` and ``memcollab_chat_completions`` in lm-eval's model registry
    (idempotent, no heavy imports: each is a placeholder until lm-eval builds it).

    ``lm_eval.models`` is imported first on purpose: lm-eval fills its registry with the
    built-in models only when the registry is empty at first lookup, so registering ours
    first would make ``hf``, ``vllm`` etc. vanish.
    """
    import lm_eval.models  # noqa: F401  (fills the registry with the built-in placeholders)
    from lm_eval.api.registry import model_registry

    for name, target in ((LLAMA_CPP_MODEL_NAME, _LLAMA_CPP_TARGET),
                         (CHAT_COMPLETIONS_MODEL_NAME, _CHAT_COMPLETIONS_TARGET)):
        if name not in model_registry:
            model_registry.register(name, target=target)


register_lm_eval_models()


def __getattr__(name: str) -> Any:
    if name in _EMBEDDED_EXPORTS:
        from memcollab_eval.models import embedded

        return getattr(embedded, name)
    if name == "LlamaCppLM":  # imports lm-eval's model API; llama-cpp-python itself only when built
        from memcollab_eval.models.llamacpp_lm import LlamaCppLM

        return LlamaCppLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
