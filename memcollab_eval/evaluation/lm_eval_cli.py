"""``memcollab-lm-eval``: lm-eval's own command line, with this project's models registered.

lm-eval 0.4.13 resolves ``--model NAME`` against its own registry and discovers no plugins, so
``lm_eval --model llama_cpp`` fails unless something imported this package first. This command
registers the models (lazily: nothing heavy is imported until a model is built) and hands over
to ``lm_eval.__main__.cli_evaluate`` with the arguments untouched, so it takes exactly lm-eval's
arguments and subcommands (``run``, ``ls``, ``validate``):

    memcollab-lm-eval --model llama_cpp --model_args model=smollm2_135m --include_path tasks \\
        --tasks gsm8k_nomemory --limit 1 --apply_chat_template
    python -m memcollab_eval.evaluation.lm_eval_cli ls tasks --include_path tasks

lm-eval's main branch discovers models through the ``lm_eval.models`` entry-point group
(``docs/plugins.md``). pyproject.toml declares ours there, and this command registers exactly
those entry points, so once that lm-eval is released plain ``lm_eval --model llama_cpp`` works
the same way.
"""

from __future__ import annotations

import sys
from importlib import metadata

from memcollab_eval.models import LLAMA_CPP_MODEL_NAME, register_lm_eval_models

ENTRY_POINT_GROUP = "lm_eval.models"
# name -> "module:class" when the package's metadata is not installed (a checkout on PYTHONPATH);
# an installed package registers what pyproject's [project.entry-points."lm_eval.models"] declares
LM_EVAL_MODELS = {
    LLAMA_CPP_MODEL_NAME: "memcollab_eval.models.llamacpp_lm:LlamaCppLM",
    "memcollab_agent": "memcollab_eval.agent.agent_lm:AgentLM",
    "memcollab_scripted": "memcollab_eval.models.scripted:ScriptedLM",
}


def declared_models() -> dict[str, str]:
    """This package's ``lm_eval.models`` entry points (name -> "module:class"), else the fallback table."""
    ours = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.value.split(":", 1)[0].split(".", 1)[0] == "memcollab_eval"}
    return ours or dict(LM_EVAL_MODELS)


def register_models() -> list[str]:
    """Register every model of :func:`declared_models` in lm-eval's registry (idempotent; each is
    a placeholder until lm-eval builds it). Returns the names."""
    register_lm_eval_models()  # imports lm_eval.models first, so lm-eval's built-ins stay
    from lm_eval.api.registry import model_registry

    models = declared_models()
    for name, target in models.items():
        if name not in model_registry:
            model_registry.register(name, target=target)
    return sorted(models)


def main(argv: list[str] | None = None) -> None:
    """Register the models, then run lm-eval's CLI on ``argv`` (default: the command line)."""
    register_models()
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
