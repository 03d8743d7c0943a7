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
from typing import Any

import lm_eval.models  # noqa: F401  (must precede register_model, or lm-eval's built-ins vanish)
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM, CachingLM, hash_args
from lm_eval.api.registry import get_model, register_model
from lm_eval.utils import simple_parse_args_string
from tqdm import tqdm

from memcollab_eval.agent.protocol import AgentConfig, AgentTask, EpisodeRunner, Message
from memcollab_eval.agent.transcript import encode_episode

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
    """Runs every ``generate_until`` request as an agent episode of ``inner``. Episodes advance
    in lock-step, so each turn is one batched call of the inner model, unless the inner model
    generates one request at a time (``sequential_generation``, see ``_generates_one_at_a_time``):
    then each episode runs to its end before the next starts.

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
        sequential = _generates_one_at_a_time(self.inner)
        with tqdm(total=len(requests), desc="memcollab_agent episodes", disable=disable_tqdm) as bar:

            def advance(indices: list[int], quiet: bool) -> list[int]:
                """One turn for each of ``indices``; returns those still open."""
                turn = [self._turn_request(requests[i], runners[i].messages, n) for n, i in enumerate(indices)]
                replies = self._inner_generate(turn, quiet)
                for i, reply in zip(indices, replies, strict=False):
                    runners[i].receive(reply)
                    if runners[i].done:  # cached now, not when the whole call ends: a killed run keeps it
                        transcripts[i] = encode_episode(runners[i].episode(), self.config.summary())
                        self.cache_hook.add_partial("generate_until", requests[i].args, transcripts[i])
                        bar.update(1)
                return [i for i in indices if not runners[i].done]

            if sequential:  # each episode to its end, then the next: every turn's prompt extends the last one
                for i in range(len(requests)):
                    while advance([i], quiet=True):
                        pass
            else:
                pending, turn_no = list(range(len(requests))), 1
                while pending:
                    bar.set_description(f"memcollab_agent episodes (turn {turn_no}: {len(pending)} open)")
                    pending, turn_no = advance(pending, quiet=disable_tqdm), turn_no + 1
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

    def _inner_generate(self, turn: list[Instance], quiet: bool) -> list[str]:
        """One call of the inner model. When it sits in lm-eval's ``CachingLM`` (the turn cache),
        cached turns are read from its store and only the rest reach the model, with its own
        progress bar under our control (``CachingLM`` itself would draw two bars per call);
        every new reply is stored at once."""
        if not isinstance(self.inner, CachingLM):
            return _generate(self.inner, turn, quiet)
        store = self.inner.dbdict
        replies: list[str | None] = [None] * len(turn)
        keys = [None if r.args[1].get("do_sample") else hash_args("generate_until", r.args) for r in turn]
        for n, key in enumerate(keys):
            if key is not None and key in store:
                replies[n] = store[key]
        missing = [n for n, reply in enumerate(replies) if reply is None]
        if missing:
            fresh = _generate(self.inner.lm, [turn[n] for n in missing], quiet)
            for n, text in zip(missing, fresh, strict=False):
                replies[n] = text
                if keys[n] is not None:
                    store[keys[n]] = text  # backends that call add_partial have stored it already
        return [r for r in replies if r is not None]

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


def _generate(lm: Any, turn: list[Instance], quiet: bool) -> list[str]:
    """``lm.generate_until(turn)``, muting its progress bar when asked and when it has one; the
    one place the inner model is called, so the one place its reply count is checked."""
    try:
        accepts = "disable_tqdm" in inspect.signature(lm.generate_until).parameters
    except (TypeError, ValueError):
        accepts = False
    replies = lm.generate_until(turn, disable_tqdm=quiet) if accepts else lm.generate_until(turn)
    if len(replies) != len(turn):
        raise RuntimeError(f"inner model returned {len(replies)} replies for {len(turn)} requests")
    return replies


def _generates_one_at_a_time(inner: Any) -> bool:
    """Whether the backend declares ``sequential_generation`` (llama_cpp does): it answers one
    request after another and reuses its KV cache for the prefix a prompt shares with the
    previous one. Running each episode to its end then makes every turn's prompt an extension
    of the last, so only the new messages are read; lock-step turns would re-read every
    conversation from the start. Batching backends (vllm, hf) keep the lock-step schedule."""
    lm = inner.lm if isinstance(inner, CachingLM) else inner
    return bool(getattr(lm, "sequential_generation", False))


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
    # registration: the models package sits above the agent protocol (its generation helpers read the
    # run config, which reads the agent's), so the backends are registered here, when a wrapper is built
    import memcollab_eval.models  # noqa: F401  (registers llama_cpp)
    import memcollab_eval.models.scripted  # noqa: F401  (registers memcollab_scripted)

    if name == "memcollab_agent":
        raise ValueError("memcollab_agent cannot wrap itself")
    log.info("memcollab_agent: building inner model %s with %s", name, args)
    return get_model(name).create_from_arg_obj(args, {k: v for k, v in extra.items() if v is not None})
