"""``memcollab_agent``: an lm-eval model that runs the agent protocol around any other
registered model.

Why a model wrapper rather than a task: lm-eval's tasks make one request per document;
the multi-turn loop (generate, run code, generate again) has to live where generation
happens, and as a wrapper it works with every backend (vllm, hf, local-chat-completions,
llama_cpp, the scripted double) without touching them. Tasks must be run with
``apply_chat_template=False``: the wrapper receives the raw prompt, renders each turn with
the inner model's chat template, and answers with the episode transcript
(:mod:`memcollab_eval.agent.transcript`), which lm-eval logs and the task scores.

Programmatic::

    AgentLM(inner_lm, AgentConfig(max_turns=5, output_chars=2000, block_timeout=10.0))

Through lm-eval's registry (``import memcollab_eval.agent.agent_lm`` first)::

    simple_evaluate(model="memcollab_agent",
                    model_args="inner=llama_cpp,model=smollm2_135m,n_ctx=2048,max_turns=3", tasks=[...])

``inner`` names the wrapped model; ``max_turns``, ``output_chars``, ``block_timeout`` and
``use_chat_template`` configure the protocol; every other argument goes to the inner model
(or put them in ``inner_args``, as ``key=value`` pairs separated by ``;``).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import lm_eval.models  # noqa: F401  (must precede register_model, or lm-eval's built-ins vanish)
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import get_model, register_model
from lm_eval.utils import simple_parse_args_string
from tqdm import tqdm

from memcollab_eval.agent.protocol import AgentConfig, AgentTask, EpisodeRunner, Message
from memcollab_eval.agent.transcript import encode_episode
from memcollab_eval.generation import Generation

log = logging.getLogger(__name__)

STOP_AT_FAKE_OUTPUT = "```output"  # models imitate the harness's output blocks: cut such a guess short
_CONFIG_KEYS = ("max_turns", "output_chars", "block_timeout", "use_chat_template")


class AgentRequestError(ValueError):
    """A request the agent cannot run: its doc lacks the fields the memcollab tasks add."""


def task_from_request(request: Instance) -> AgentTask:
    """The agent's view of one lm-eval request: its raw prompt plus the doc's agent fields."""
    doc = request.doc or {}
    if "memcollab_domain" not in doc:
        raise AgentRequestError(
            f"memcollab_agent needs docs from the memcollab tasks (field 'memcollab_domain' is missing in a doc of "
            f"task {request.task_name!r}); run it on the *_memcollab / *_nomemory tasks"
        )
    prompt, _ = request.args
    return AgentTask(prompt=prompt, domain=doc["memcollab_domain"], visible_test=doc.get("memcollab_visible_test", ""),
                     setup_code=doc.get("memcollab_setup_code", ""))


def plain_render(messages: list[Message]) -> str:
    """For inner models used without a chat template: a labelled transcript ending in the
    assistant's cue."""
    labels = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "".join(f"{labels[m['role']]}: {m['content']}\n\n" for m in messages) + "Assistant:"


@register_model("memcollab_agent")
class AgentLM(LM):
    """Runs every ``generate_until`` request as an agent episode of ``inner``; episodes advance
    in lock-step, so each turn is one batched call of the inner model.

    Resuming: an episode goes to lm-eval's request cache (``add_partial``) the moment it ends,
    and an ``inner`` wrapped in lm-eval's ``CachingLM`` stores every turn's reply as the inner
    model returns it (the evaluate job does both under ``use_cache=true``), so a re-run after an
    interruption replays finished episodes and finished turns and generates only the rest.

    Code blocks run one after another in the calling thread, never in a thread pool: the
    sandbox's workers are started with ``--die-with-parent``, which Linux ties to the thread
    that started them, so a worker (re)started from a short-lived thread dies with it."""

    def __init__(self, inner: Any = None, config: AgentConfig | None = None, *,
                 inner_args: str | dict[str, Any] | None = None, batch_size: Any = None,
                 max_batch_size: Any = None, device: Any = None, **kwargs: Any) -> None:
        super().__init__()
        overrides = {k: kwargs.pop(k) for k in _CONFIG_KEYS if k in kwargs}
        if inner is not None and not isinstance(inner, str):  # a built model (an LM, or lm-eval's CachingLM)
            if inner_args or kwargs:
                raise TypeError(f"memcollab_agent: inner arguments {sorted(kwargs) or inner_args!r} given with an "
                                "already built inner model")
            self.inner = inner
        elif isinstance(inner, str) and inner:
            self.inner = _build_inner(inner, {**_parse_inner_args(inner_args), **kwargs},
                                      {"batch_size": batch_size, "max_batch_size": max_batch_size, "device": device})
        else:
            raise TypeError("memcollab_agent needs the model to wrap: AgentLM(inner_lm, ...) or model_args "
                            "'inner=<registered model name>,<its args>'")
        config = config or AgentConfig()
        if overrides:
            config = AgentConfig(**{**config.summary(), "sandbox": config.sandbox,
                                    "use_chat_template": config.use_chat_template, **_typed(overrides)})
        self.config = config

    # ---- lm-eval interface -----------------------------------------------------------

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        runners = [EpisodeRunner(task_from_request(r), self.config) for r in requests]
        transcripts: list[str | None] = [None] * len(requests)
        pending, turn_no = list(range(len(requests))), 0
        with tqdm(total=len(requests), desc="memcollab_agent episodes (turn 1)", disable=disable_tqdm) as bar:
            while pending:
                turn = [self._turn_request(requests[i], runners[i].messages, n) for n, i in enumerate(pending)]
                replies = self._inner_generate(turn, disable_tqdm)
                if len(replies) != len(turn):
                    raise RuntimeError(f"inner model returned {len(replies)} replies for {len(turn)} requests")
                for i, reply in zip(pending, replies):
                    runners[i].receive(reply)
                    if runners[i].done:  # cached now, not when the whole call ends: a killed run keeps it
                        transcripts[i] = encode_episode(runners[i].episode(), self.config.summary())
                        self.cache_hook.add_partial("generate_until", requests[i].args, transcripts[i])
                        bar.update(1)
                pending = [i for i in pending if not runners[i].done]
                turn_no += 1
                if pending:
                    bar.set_description(f"memcollab_agent episodes (turn {turn_no + 1}: {len(pending)} open)")
        return [t for t in transcripts if t is not None]  # every episode ends: by an answer or at max_turns

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        raise NotImplementedError("memcollab_agent runs generate_until tasks only")

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("memcollab_agent runs generate_until tasks only")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError(
            "memcollab_agent renders every turn with the inner model's chat template itself: run the tasks with "
            "apply_chat_template=False (lm_eval: without --apply_chat_template)"
        )

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.inner.chat_template(chat_template) if chat_template else None

    @property
    def tokenizer_name(self) -> str:
        inner = getattr(self.inner, "tokenizer_name", type(self.inner).__name__)
        c = self.config
        return f"memcollab_agent_t{c.max_turns}_o{c.output_chars}_b{c.block_timeout:g}__{inner}"

    @property
    def usage(self) -> list[dict[str, Any]] | None:
        """The inner model's per-generation usage (one record per turn), when it keeps any."""
        return getattr(self.inner, "usage", None)

    def get_model_info(self) -> dict[str, Any]:
        info = dict(self.inner.get_model_info()) if hasattr(self.inner, "get_model_info") else {}
        return {**info, "memcollab_protocol": "agent", "memcollab_agent": self.config.summary()}

    # ---- one turn ----------------------------------------------------------------------

    def _inner_generate(self, turn: list[Instance], disable_tqdm: bool) -> list[str]:
        """One batched call. The inner model's own bar stays on (a first turn of a few hundred
        episodes on a CPU takes an hour, and only that bar moves meanwhile) unless the caller
        mutes progress; lm-eval's CachingLM takes no such argument and shows it anyway."""
        try:
            accepts = "disable_tqdm" in inspect.signature(self.inner.generate_until).parameters
        except (TypeError, ValueError):
            accepts = False
        if accepts:
            return self.inner.generate_until(turn, disable_tqdm=disable_tqdm)
        return self.inner.generate_until(turn)

    def render(self, messages: list[Message]) -> str:
        if not self.config.use_chat_template:
            return plain_render(messages)
        return self.inner.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True)

    def _turn_request(self, request: Instance, messages: list[Message], n: int) -> Instance:
        _, gen_kwargs = request.args
        kwargs = dict(gen_kwargs or {})
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        kwargs["until"] = until + ([STOP_AT_FAKE_OUTPUT] if STOP_AT_FAKE_OUTPUT not in until else [])
        return Instance(request_type="generate_until", doc=request.doc, arguments=(self.render(messages), kwargs),
                        idx=n, metadata=(request.task_name, request.doc_id, request.repeats))


def _parse_inner_args(inner_args: str | dict[str, Any] | None) -> dict[str, Any]:
    if not inner_args:
        return {}
    if isinstance(inner_args, dict):
        return dict(inner_args)
    return simple_parse_args_string(str(inner_args).replace(";", ","))


def _typed(overrides: dict[str, Any]) -> dict[str, Any]:
    """model_args arrive as strings or guessed types: coerce the protocol's own keys."""
    casts = {"max_turns": int, "output_chars": int, "block_timeout": float,
             "use_chat_template": lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")}
    return {k: casts[k](v) for k, v in overrides.items()}


def _build_inner(name: str, args: dict[str, Any], extra: dict[str, Any]) -> LM:
    """The wrapped model, through the same registry (our own backends registered first)."""
    import memcollab_eval.llm.scripted  # noqa: F401  (registers memcollab_scripted)
    import memcollab_eval.models  # noqa: F401  (registers llama_cpp)

    if name == "memcollab_agent":
        raise ValueError("memcollab_agent cannot wrap itself")
    log.info("memcollab_agent: building inner model %s with %s", name, args)
    return get_model(name).create_from_arg_obj(args, {k: v for k, v in extra.items() if v is not None})


def agent_generation(agent: AgentLM, prompt: str, fields: dict[str, Any], gen_kwargs: dict[str, Any]) -> Generation:
    """One episode outside a task (bank building): a ``generation.Generation`` whose text is the
    transcript and whose token counts add up the inner model's turns (None when it keeps none)."""
    usage_before = len(agent.usage or [])
    start = time.perf_counter()
    request = Instance(request_type="generate_until", doc=dict(fields), arguments=(prompt, dict(gen_kwargs)), idx=0)
    text = agent.generate_until([request], disable_tqdm=True)[0]
    seconds = time.perf_counter() - start
    turns = list(agent.usage or [])[usage_before:]

    def total(key: str) -> int | None:
        values = [u.get(key) for u in turns]
        return None if not values or any(v is None for v in values) else int(sum(values))

    return Generation(text=text, prompt_tokens=total("prompt_tokens"), completion_tokens=total("completion_tokens"),
                      truncated=any(bool(u.get("truncated")) for u in turns) if turns else None, seconds=seconds)
