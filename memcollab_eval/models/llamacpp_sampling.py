"""lm-eval generation kwargs -> llama.cpp sampler arguments.

Why a table of defaults: llama-cpp-python's own defaults (top_k=40, top_p=0.95, min_p=0.05)
would silently turn "temperature sampling" into something else; vLLM and HF's bare defaults
sample from the plain temperature-scaled distribution, and so does this backend unless a task
asks otherwise.
"""

from __future__ import annotations

from typing import Any

# gen_kwargs that map onto llama.cpp sampler arguments (lm-eval / HF name -> llama_cpp name).
_SAMPLER_KWARGS = {
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repetition_penalty": "repeat_penalty",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}
# Plain temperature sampling unless a task asks otherwise (as vLLM and HF's bare defaults do);
# llama-cpp-python's own defaults (top_k=40, top_p=0.95, min_p=0.05) would silently change it.
_SAMPLER_DEFAULTS: dict[str, float | int] = {
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


def sampler_args(kwargs: dict[str, Any], *, default_seed: int) -> tuple[dict[str, Any], list[str]]:
    """Map normalized lm-eval gen_kwargs onto ``create_completion`` arguments; returns them and
    the names of kwargs llama.cpp has no use for (consumed from ``kwargs``)."""
    do_sample = bool(kwargs.pop("do_sample", False))
    temperature = float(kwargs.pop("temperature", 1.0))
    temperature = temperature if do_sample else 0.0  # llama.cpp decodes greedily at temperature 0
    args: dict[str, Any] = {"temperature": temperature, **_SAMPLER_DEFAULTS}
    seed = kwargs.pop("seed", None)
    for key in list(kwargs):
        if key in _SAMPLER_KWARGS:
            args[_SAMPLER_KWARGS[key]] = type(_SAMPLER_DEFAULTS[_SAMPLER_KWARGS[key]])(kwargs.pop(key))
    args["seed"] = int(seed) if seed is not None else default_seed
    return args, sorted(kwargs)
