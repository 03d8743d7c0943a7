"""``memcollab_chat_completions``: lm-eval's ``local-chat-completions`` with neutral sampling settings.

Why a subclass: lm-eval's chat-completions client sends ``temperature`` (0 unless the task samples),
``max_tokens``, ``stop``, ``seed`` and whatever else the task's ``generation_kwargs`` hold, and nothing
about the other sampling settings, so each server fills them with its own defaults. Those are not
neutral: llama-cpp-python's server applies repeat_penalty 1.1 (and top_k 40, top_p 0.95, min_p 0.05
when sampling), and ``vllm serve`` takes the model's ``generation_config.json`` (Qwen2.5's says
repetition_penalty 1.05). A repetition penalty changes greedy decoding too, so "greedy" was not greedy,
and the same model answered differently behind a server than in process. Model args ``model_args``
cannot add payload keys (lm-eval's API models drop unknown arguments), so this class adds them: the
settings of :data:`NEUTRAL_SAMPLING` (the in-process ``llama_cpp`` backend's defaults, plus vLLM's
name for the repetition penalty), each overridable as a model argument and left out when set to None
(``top_k=None``, e.g. for a server that rejects 0). A task's own ``generation_kwargs`` still win.

Everything else (the HTTP client, retries, ``num_concurrent``, parsing) is lm-eval's, so this is the
same client path as ``local-chat-completions`` against ``vllm serve``, llama.cpp's server or TGI.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalChatCompletion

MODEL_NAME = "memcollab_chat_completions"

# Payload key -> neutral value. Servers ignore the keys they do not know (llama-cpp-python's and vLLM's
# request models do), so both spellings of the repetition penalty go out.
NEUTRAL_SAMPLING: dict[str, float | int] = {
    "top_p": 1.0,
    "top_k": 0,               # 0 = off for llama.cpp and vLLM >= 0.8 (older vLLM and SGLang want -1)
    "min_p": 0.0,
    "repeat_penalty": 1.0,    # llama.cpp's name (llama-cpp-python's server defaults to 1.1)
    "repetition_penalty": 1.0,  # vLLM's, TGI's and SGLang's name
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


@register_model(MODEL_NAME)
class NeutralChatCompletion(LocalChatCompletion):
    """``local-chat-completions`` that also sends :data:`NEUTRAL_SAMPLING` (each key overridable
    as a model argument; None leaves it out of the request)."""

    def __init__(self, **kwargs: Any) -> None:
        self.sampling = {key: kwargs.pop(key, value) for key, value in NEUTRAL_SAMPLING.items()}
        self.sampling = {key: value for key, value in self.sampling.items() if value is not None}
        super().__init__(**kwargs)

    def _create_payload(self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None, **kwargs) -> dict:
        payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, eos=eos,
                                          **kwargs)
        return {**self.sampling, **payload}  # the task's generation_kwargs (in the payload) win
