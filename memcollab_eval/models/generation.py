"""Models outside an lm-eval task: load a target config by name, build it through lm-eval's
model registry, and generate chat responses in batches with usage accounting.

Bank building (trajectories, distillation) needs raw generation rather than a task, but it
must reach the same backends as evaluation (vllm, hf, local-chat-completions, llama_cpp,
the scripted test double), so it goes through the same registry.
"""

from __future__ import annotations

import importlib.resources
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (built-ins first, or they vanish from the registry)
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from omegaconf import OmegaConf

import memcollab_eval.models.scripted  # noqa: F401  (registers memcollab_scripted)
from memcollab_eval.config import TargetConf
from memcollab_eval.models import register_lm_eval_models


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    truncated: bool | None
    seconds: float


def target_names() -> list[str]:
    folder = importlib.resources.files("memcollab_eval.conf") / "target"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_target(name: str) -> TargetConf:
    """A target config: a name from conf/target/, or a path to a YAML file of the same shape."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"target config file {name} not found")
        text = path.read_text()
    elif name in target_names():
        text = (importlib.resources.files("memcollab_eval.conf") / "target" / f"{name}.yaml").read_text()
    else:
        raise ValueError(f"unknown model {name!r}; valid target configs: {', '.join(target_names())} "
                         "(or a path to a target .yaml)")
    merged = OmegaConf.merge(OmegaConf.structured(TargetConf), OmegaConf.create(text))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def build_lm(target: TargetConf) -> Any:
    """Instantiate a target through lm-eval's model registry (any backend)."""
    register_lm_eval_models()
    return get_model(target.model).create_from_arg_obj(dict(target.model_args), {"batch_size": target.batch_size})


def render_chat(lm: Any, prompt: str, *, system: str | None = None, chat: bool = True) -> str:
    if not chat:
        return prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return lm.apply_chat_template(messages, add_generation_prompt=True)


def generate(lm: Any, prompts: list[str], gen_kwargs: dict[str, Any], *, chat: bool = True,
             system: str | None = None) -> list[Generation]:
    """Generate one response per prompt; token counts come from the backend when it keeps them."""
    return generate_requests(lm, [(p, gen_kwargs) for p in prompts], chat=chat, system=system)


def generate_requests(lm: Any, requests: list[tuple[str, dict[str, Any]]], *, chat: bool = True,
                      system: str | None = None) -> list[Generation]:
    """One response per ``(prompt, gen_kwargs)``, all handed to the backend in one
    ``generate_until`` call so a batching backend (llama_cpp with ``n_parallel`` > 1) decodes them
    together. Each request keeps its own settings (a seed per sample), so batching changes no
    request's sampling; only greedy kernels' rounding can differ (see llamacpp_batch)."""
    if not requests:
        return []
    instances = [
        Instance(request_type="generate_until", doc={}, arguments=(render_chat(lm, p, system=system, chat=chat),
                                                                   dict(kwargs)), idx=i)
        for i, (p, kwargs) in enumerate(requests)
    ]
    usage_before = len(getattr(lm, "usage", []) or [])
    start = time.perf_counter()
    texts = lm.generate_until(instances)
    seconds = (time.perf_counter() - start) / len(requests)
    usage = list(getattr(lm, "usage", []) or [])[usage_before:]
    out = []
    for i, text in enumerate(texts):
        u = usage[i] if i < len(usage) else {}
        out.append(Generation(text=text, prompt_tokens=u.get("prompt_tokens"),
                              completion_tokens=u.get("completion_tokens"), truncated=u.get("truncated"),
                              seconds=float(u.get("seconds", seconds))))
    return out
