"""An lm-eval model (``llama_cpp``) that runs a GGUF model in-process with llama-cpp-python.

Why in-process: on a 2-core CPU machine without network a server adds start-up, ports and a
second process for nothing; llama-cpp-python loads the small embedded models (see
:mod:`memcollab_eval.models.embedded`) in a fraction of a second and generates at tens to
hundreds of tokens per second.

What it adds over "just call llama.cpp":

* lm-eval's interface: ``generate_until`` honouring ``until`` / ``max_gen_toks`` /
  ``do_sample`` / ``temperature`` (greedy by default), ``apply_chat_template`` rendered with
  the GGUF's own Jinja chat template, ``tokenizer_name`` for the request cache, and
  ``loglikelihood`` / ``loglikelihood_rolling`` when loaded with ``logits_all=True``.
* usage accounting: for every generation request, in request order, the prompt and completion
  token counts and whether generation hit the token limit (``truncated``), so the evaluation can
  report a truncation rate. Read ``lm.usage`` (list of dicts) or ``lm.usage_summary()``.
* batched decoding: with ``n_parallel > 1`` up to that many requests are decoded together in one
  llama.cpp batch (:mod:`memcollab_eval.models.llamacpp_batch`), refilling a slot as soon as its
  request stops; on a CPU that roughly doubles the aggregate tokens per second. ``n_parallel=1``
  is the sequential path of earlier versions and reproduces their outputs exactly.
  ``generation_fingerprint`` names the mode, for request-cache keys.
* each distinct (prompt, settings) request is generated once per ``generate_until`` call and its
  answer given to every identical request (:mod:`memcollab_eval.models.request_sharing`);
  ``share_identical=False`` turns that off.

Usage::

    import lm_eval, memcollab_eval.models  # importing the package registers "llama_cpp"
    lm_eval.simple_evaluate(model="llama_cpp", model_args="model=smollm2_135m,n_ctx=4096",
                            tasks=[...], apply_chat_template=True)

    # to read the usage afterwards, build the model yourself and pass the instance:
    lm = lm_eval.api.registry.get_model("llama_cpp").create_from_arg_string("model=qwen25_coder_05b")
    results = lm_eval.simple_evaluate(model=lm, tasks=[...], apply_chat_template=True)
    lm.usage_summary().truncation_rate, lm.usage[0]["completion_tokens"]

model_args: ``model`` (embedded name or .gguf path; ``pretrained`` is an alias), ``n_ctx``
(4096), ``n_threads`` (usable CPUs), ``n_threads_batch`` (= n_threads), ``n_batch`` (512),
``seed`` (1234), ``max_gen_toks`` (1024, at most n_ctx/2 when not given), ``chat_template``
(name of a template stored in the GGUF, or a path to a Jinja file; default: the GGUF's own),
``logits_all`` (False), ``verbose`` (False), ``progress`` (True), ``n_parallel``
(DEFAULT_N_PARALLEL; sequences decoded together, 1 = sequential), ``share_identical`` (True).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lm_eval.models  # noqa: F401  (must precede register_model, or lm-eval's built-ins vanish)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from memcollab_eval.models.chat_messages import continue_final_message, merge_system_into_user
from memcollab_eval.models.embedded import EMBEDDED_MODELS, resolve_model
from memcollab_eval.models.generation_usage import GenerationUsage, UsageSummary, summarize_usage
from memcollab_eval.models.llamacpp_batch import BatchedDecoder, BatchRequest, BatchResult
from memcollab_eval.models.llamacpp_memory import (
    KVShape,
    available_memory_bytes,
    check_cache_fits,
    estimate_cache,
)
from memcollab_eval.models.llamacpp_sampling import sampler_args
from memcollab_eval.models.llamacpp_scoring import LlamaCppScoring
from memcollab_eval.models.request_sharing import plan_sharing

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance

logger = logging.getLogger(__name__)

DEFAULT_MAX_GEN_TOKS = 1024
# Sequences decoded together by default (see benchmarks/bench_generation.py for the measurements).
DEFAULT_N_PARALLEL = 8
INSTALL_HINT = "pip install 'llama-cpp-python>=0.3' (the 'cpu' extra of memcollab-eval)"

def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            f"the llama_cpp model needs llama-cpp-python, which is not importable ({exc}). {INSTALL_HINT}"
        ) from exc
    return llama_cpp


@dataclass(frozen=True)
class _Prepared:
    """One request resolved into what decides its completion (and hence its sharing key)."""

    prompt: tuple[int, ...]
    context_truncated: bool
    until: tuple[str, ...]
    max_gen_toks: int
    sampling: dict[str, Any]

    def key(self) -> tuple[Any, ...]:
        sampled = self.sampling.get("temperature", 0.0) > 0.0
        settings = {k: v for k, v in self.sampling.items() if sampled or k != "seed"}  # greedy: seed is moot
        return (self.prompt, self.until, self.max_gen_toks, tuple(sorted(settings.items())))


@register_model("llama_cpp")
class LlamaCppLM(LlamaCppScoring, TemplateLM):
    """lm-eval model backed by an in-process ``llama_cpp.Llama`` (CPU; ``n_parallel`` requests at a time)."""

    def __init__(
        self,
        model: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        seed: int = 1234,
        max_gen_toks: int | None = None,
        chat_template: str | None = None,
        logits_all: bool = False,
        verbose: bool = False,
        pretrained: str | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,
        device: str | None = None,
        progress: bool = True,
        n_parallel: int | None = None,
        share_identical: bool | str = True,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise TypeError(
                f"unknown model_args for llama_cpp: {', '.join(sorted(unknown))}. Known: model (or pretrained), n_ctx, "
                "n_threads, n_threads_batch, n_batch, seed, max_gen_toks, chat_template, logits_all, verbose, progress, "
                "n_parallel, share_identical"
            )
        model = model if model is not None else pretrained
        if not model:
            raise ValueError(
                "llama_cpp needs model_args 'model': an embedded model name "
                f"({', '.join(EMBEDDED_MODELS)}) or a path to a .gguf file"
            )
        if device not in (None, "cpu") and not str(device).startswith("cpu"):
            logger.warning("llama_cpp runs on the CPU; ignoring device=%s", device)
        del batch_size, max_batch_size  # requests run one at a time; accepted because lm-eval always passes them

        self.n_ctx = int(n_ctx)
        # Unset: 1024, but never more than half the window, so a small n_ctx alone stays valid.
        self._max_gen_toks = int(max_gen_toks) if max_gen_toks else min(DEFAULT_MAX_GEN_TOKS, self.n_ctx // 2)
        if not 0 < self._max_gen_toks < self.n_ctx:
            raise ValueError(f"max_gen_toks ({self._max_gen_toks}) must be positive and below n_ctx ({self.n_ctx})")
        self.n_parallel = DEFAULT_N_PARALLEL if n_parallel in (None, "") else int(n_parallel)
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be at least 1 (1 = sequential decoding), got {self.n_parallel}")
        self.share_identical = str(share_identical).lower() not in ("false", "0", "no")
        self.seed = int(seed)
        self.logits_all = bool(logits_all)
        self.progress = bool(progress)
        self.model_name = str(model)
        self.model_path = resolve_model(self.model_name, progress=self.progress)

        llama_cpp = _import_llama_cpp()
        threads = int(n_threads) if n_threads else _usable_cpus()
        self._llm = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=self.n_ctx,
            n_threads=threads,
            n_threads_batch=int(n_threads_batch) if n_threads_batch else threads,
            n_batch=int(n_batch),
            seed=self.seed,
            logits_all=self.logits_all,
            verbose=bool(verbose),
        )
        self.n_threads = threads
        self._bos = int(self._llm.token_bos())
        self._eos = int(self._llm.token_eos())
        self._add_bos = self._model_adds_bos()
        self._eos_text = (
            self._llm.detokenize([self._eos], special=True).decode("utf-8", "replace") if self._eos >= 0 else ""
        )
        self._template_text = self._select_chat_template(chat_template)
        self._formatters: dict[bool, Any] = {}
        self._records: list[GenerationUsage] = []
        self._requests_seen = 0
        self._warned: set[str] = set()
        self.shared_requests = 0  # requests answered by an identical request's generation
        self._batched = self._batched_decoder(llama_cpp, int(n_batch)) if self.n_parallel > 1 else None

    def _batched_decoder(self, llama_cpp: Any, n_batch: int) -> BatchedDecoder:
        """The batched context, after checking that its KV cache fits (a clear error, not an OOM kill)."""
        limit = int(llama_cpp.llama_max_parallel_sequences())
        if self.n_parallel > limit:
            raise ValueError(f"n_parallel={self.n_parallel} exceeds llama.cpp's limit of {limit} sequences")
        if self.n_parallel > n_batch:  # every generating sequence puts one token into each batch
            raise ValueError(f"n_parallel={self.n_parallel} must not exceed n_batch={n_batch}")
        estimate = estimate_cache(KVShape.from_llama(self._llm), self.n_parallel, self.n_ctx, n_ubatch=n_batch)
        check_cache_fits(estimate, available_memory_bytes(), model_name=self.model_path.name)
        return BatchedDecoder(self._llm, self.n_parallel, self.n_ctx, n_batch)

    # ------------------------------------------------------------------ setup helpers

    def _model_adds_bos(self) -> bool:
        """Whether the GGUF asks for a BOS token in front of every prompt (e.g. Llama yes, Qwen no)."""
        inner = getattr(self._llm, "_model", None)
        if inner is not None and hasattr(inner, "add_bos_token"):
            return bool(inner.add_bos_token())
        return str(self._llm.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"

    def _select_chat_template(self, chat_template: str | None) -> str | None:
        """The Jinja chat template to render with: a path, a named GGUF template, or the GGUF default."""
        metadata: Mapping[str, str] = self._llm.metadata
        if chat_template in (None, "", True, False, "True", "true", "default"):
            return metadata.get("tokenizer.chat_template")
        name = str(chat_template)
        if f"tokenizer.chat_template.{name}" in metadata:
            return metadata[f"tokenizer.chat_template.{name}"]
        path = Path(name).expanduser()
        if path.is_file():
            return path.read_text(encoding="utf-8")
        stored = [
            k.removeprefix("tokenizer.chat_template.") for k in metadata if k.startswith("tokenizer.chat_template.")
        ]
        raise ValueError(
            f"chat_template={name!r} is neither a template stored in {self.model_path.name} "
            f"({', '.join(stored) or 'it stores only the default one'}) nor a file"
        )

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    # ------------------------------------------------------------------ lm-eval properties

    @property
    def eot_token_id(self) -> int:
        return self._eos

    @property
    def prefix_token_id(self) -> int:
        """Token that conditions an empty context: BOS when the model has one, else EOS (as HF)."""
        return self._bos if self._bos >= 0 else self._eos

    @property
    def max_length(self) -> int:
        return self.n_ctx

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        """Fingerprint for lm-eval's request cache: the model file plus the chat template in use."""
        digest = hashlib.sha256((self._template_text or "").encode()).hexdigest()[:10]
        return f"llama_cpp__{self.model_path.stem}__tpl-{digest}"

    @property
    def generation_fingerprint(self) -> str:
        """What a request-cache key must include besides the request: model, template and decoding
        mode. Batched and sequential greedy outputs can differ in rare tokens (different kernels'
        rounding), so ``__seq`` and ``__batch<n>`` completions must never share a cache."""
        mode = "seq" if self.n_parallel == 1 else f"batch{self.n_parallel}"
        return f"{self.tokenizer_name}__{mode}"

    @property
    def sequential_generation(self) -> bool:
        """True with ``n_parallel=1``: one request after another, and llama.cpp keeps the KV cache
        of the prefix a prompt shares with the previous one, so callers with multi-turn work (the
        agent wrapper) run each episode to its end. Batched: they advance episodes in lock-step."""
        return self.n_parallel == 1

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for callers that need metadata or raw access)."""
        return self._llm

    def get_model_info(self) -> dict[str, Any]:
        """Extra keys lm-eval merges into ``results["config"]`` for reproducibility."""
        known = EMBEDDED_MODELS.get(self.model_name)
        return {
            "model_name_or_path": self.model_name,
            "model_path": str(self.model_path),
            "model_sha256": known.sha256 if known else None,
            "model_general_name": self._llm.metadata.get("general.name"),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "seed": self.seed,
            "max_gen_toks": self._max_gen_toks,
            "n_parallel": self.n_parallel,
            "generation_fingerprint": self.generation_fingerprint,
        }

    # ------------------------------------------------------------------ tokenization

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Tokenize like HF: special-token text (``<|im_start|>``) becomes special tokens.

        BOS is added when the model wants it (``add_special_tokens=None``) unless the text already
        starts with it (e.g. a chat template that writes ``{{ bos_token }}``), so it is never doubled.
        """
        tokens = list(self._llm.tokenize(string.encode("utf-8"), add_bos=False, special=True))
        add_bos = self._add_bos if add_special_tokens is None else bool(add_special_tokens)
        if add_bos and self._bos >= 0 and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self._llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ chat

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The Jinja template ``apply_chat_template`` renders with (lm-eval logs it with the results)."""
        if chat_template is False or chat_template is None:
            return None
        return self._template_text

    def _formatter(self, add_generation_prompt: bool) -> Any:
        if self._template_text is None:
            raise ValueError(
                f"{self.model_path.name} carries no chat template; pass chat_template=<path to a Jinja file> "
                "in model_args, or evaluate without apply_chat_template"
            )
        if add_generation_prompt not in self._formatters:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            bos_text = (
                self._llm.detokenize([self._bos], special=True).decode("utf-8", "replace") if self._bos >= 0 else ""
            )
            self._formatters[add_generation_prompt] = Jinja2ChatFormatter(
                template=self._template_text,
                eos_token=self._eos_text,
                bos_token=bos_text,
                add_generation_prompt=add_generation_prompt,
            )
        return self._formatters[add_generation_prompt]

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render ``chat_history`` with the GGUF's chat template into one prompt string."""
        import jinja2

        formatter = self._formatter(bool(add_generation_prompt))
        messages: list[dict[str, Any]] = [dict(m) for m in chat_history]
        try:
            rendered = formatter(messages=messages).prompt
        except (jinja2.TemplateError, ValueError) as exc:
            if not any(m.get("role") == "system" for m in messages):
                raise
            self._warn_once("system", "chat template rejected the system role (%s); folding it into the user turn", exc)
            messages = merge_system_into_user(messages)
            rendered = formatter(messages=messages).prompt
        if not add_generation_prompt and messages and messages[-1].get("role") == "assistant":
            rendered = continue_final_message(rendered, messages)
        return rendered

    # ------------------------------------------------------------------ generation

    @property
    def usage(self) -> list[dict[str, Any]]:
        """Per-request usage dicts, in the order the requests were given to ``generate_until``.

        Requests answered from lm-eval's response cache (``use_cache``) never reach this model and
        are not listed.
        """
        return [r.to_dict() for r in self._records]

    @property
    def usage_records(self) -> tuple[GenerationUsage, ...]:
        return tuple(self._records)

    def usage_summary(self) -> UsageSummary:
        return summarize_usage(self._records)

    def reset_usage(self) -> None:
        self._records.clear()

    def _sampling_args(self, kwargs: dict[str, Any], default_seed: int) -> dict[str, Any]:
        args, ignored = sampler_args(kwargs, default_seed=default_seed)
        if ignored:
            self._warn_once(f"ignored:{ignored}", "llama_cpp ignores unsupported gen_kwargs: %s", ignored)
        return args

    def _fit_prompt(self, tokens: list[int], max_gen_toks: int) -> tuple[list[int], bool]:
        """Keep the whole prompt whenever it fits; only a prompt that fills the window is cut.

        A long prompt first eats into the generation budget (llama.cpp stops at ``n_ctx`` and the
        request is then reported ``truncated``), like vLLM; only when the prompt alone leaves no
        room is it cut from the left to ``n_ctx - max_gen_toks`` tokens, like lm-eval's HF backend.
        """
        if len(tokens) < self.n_ctx:
            return tokens, False
        keep = self.n_ctx - max_gen_toks
        self._warn_once(
            "ctx",
            "prompt of %d tokens does not fit n_ctx=%d; keeping its last %d tokens",
            len(tokens),
            self.n_ctx,
            keep,
        )
        return tokens[-keep:], True

    def _prepare(self, context: str, gen_kwargs: Mapping[str, Any] | None, number: int) -> _Prepared:
        """Resolve one request: its prompt tokens, stops, token limit and sampler arguments.

        ``number`` counts requests over the model's life: a distinct but reproducible default
        seed per request (``seed + number``), so repeated samples of one prompt differ.
        """
        kwargs = dict(normalize_gen_kwargs(dict(gen_kwargs or {}), self._max_gen_toks))
        until = handle_stop_sequences(kwargs.pop("until", None), eos=self._eos_text or None)
        max_gen_toks = min(int(kwargs.pop("max_gen_toks")), self.n_ctx - 1)
        kwargs.pop("max_length", None)
        sampling = self._sampling_args(kwargs, default_seed=self.seed + number)
        prompt, cut = self._fit_prompt(self.tok_encode(context), max_gen_toks)
        return _Prepared(tuple(prompt), cut, tuple(until), max_gen_toks, sampling)

    def _generate_sequential(self, request: _Prepared) -> tuple[str, GenerationUsage]:
        """One request through ``create_completion``: the path of ``n_parallel=1``."""
        started = time.perf_counter()
        response = self._llm.create_completion(
            list(request.prompt), max_tokens=request.max_gen_toks, stop=[s for s in request.until if s],
            **request.sampling,
        )
        seconds = time.perf_counter() - started
        choice = response["choices"][0]
        text = postprocess_generated_text(choice["text"], stop=list(request.until), think_end_token=None)
        usage = GenerationUsage(
            prompt_tokens=int(response["usage"]["prompt_tokens"]),
            completion_tokens=int(response["usage"]["completion_tokens"]),
            truncated=choice.get("finish_reason") == "length",
            finish_reason=str(choice.get("finish_reason")),
            max_gen_toks=request.max_gen_toks,
            context_truncated=request.context_truncated,
            seconds=seconds,
        )
        return text, usage

    def _batch_request(self, request: _Prepared) -> BatchRequest:
        """The batched equivalent of the sequential call: the same token budget rule as
        ``create_completion`` (never past ``n_ctx``) and the same stops and sampler arguments."""
        prompt = list(request.prompt) or [self.prefix_token_id]
        budget = request.max_gen_toks
        if budget + len(prompt) >= self.n_ctx:
            budget = self.n_ctx - len(prompt)
        return BatchRequest(prompt=prompt, max_tokens=budget, stop=tuple(s for s in request.until if s),
                            sampling=request.sampling)

    def _usage_from_batch(self, request: _Prepared, result: BatchResult) -> tuple[str, GenerationUsage]:
        text = postprocess_generated_text(result.text, stop=list(request.until), think_end_token=None)
        return text, GenerationUsage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            truncated=result.finish_reason == "length",
            finish_reason=result.finish_reason,
            max_gen_toks=request.max_gen_toks,
            context_truncated=request.context_truncated,
            seconds=result.seconds,
        )

    def _run(
        self, prepared: list[_Prepared], bar: Any, on_done: Callable[[int, str], None] | None = None,
    ) -> list[tuple[str, GenerationUsage]]:
        """Generate ``prepared`` (already distinct), sequentially or batched; outputs in order.

        ``on_done(index, text)`` is called as each one finishes (in finishing order).
        """
        started = time.perf_counter()
        produced = 0

        def progress(index: int, text: str, usage: GenerationUsage) -> None:
            nonlocal produced
            produced += usage.completion_tokens
            bar.update(1)
            bar.set_postfix(tok_s=f"{produced / max(time.perf_counter() - started, 1e-9):.1f}", refresh=False)
            if on_done is not None:
                on_done(index, text)

        if self._batched is None:
            done = []
            for index, request in enumerate(prepared):
                done.append(self._generate_sequential(request))
                progress(index, *done[-1])
            return done

        outputs: list[tuple[str, GenerationUsage] | None] = [None] * len(prepared)

        def finished(index: int, result: BatchResult) -> None:
            outputs[index] = self._usage_from_batch(prepared[index], result)
            progress(index, *outputs[index])

        self._batched.generate([self._batch_request(r) for r in prepared], on_finish=finished)
        return [o for o in outputs if o is not None]

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Generate for each request; ``Instance.args`` is ``(context, gen_kwargs)``. Results and
        usage records come in request order; identical requests share one generation."""
        first_number = self._requests_seen
        prepared = [self._prepare(*r.args, first_number + i) for i, r in enumerate(requests)]
        self._requests_seen += len(requests)
        keys = [p.key() if self.share_identical else i for i, p in enumerate(prepared)]
        plan = plan_sharing(keys)
        bar = tqdm(total=len(plan.unique), desc="llama_cpp generate_until",
                   disable=disable_tqdm or not self.progress)
        members: dict[int, list[int]] = {}
        for index, group in enumerate(plan.source):
            members.setdefault(group, []).append(index)

        def cache_now(group: int, text: str) -> None:
            # lm-eval's request cache (use_cache) commits each answer as it is added: written as soon as a
            # generation ends, a run that is killed after hours resumes with everything it finished
            for index in members[group]:
                self.cache_hook.add_partial("generate_until", requests[index].args, text)

        try:
            outputs = self._run([prepared[i] for i in plan.unique], bar, on_done=cache_now)
        finally:
            bar.close()
        results: list[str] = []
        for index in range(len(requests)):
            text, usage = outputs[plan.source[index]]
            if plan.is_copy(index):  # the answer is another request's: no time of its own
                usage = dataclasses.replace(usage, seconds=0.0)
            self._records.append(usage)
            results.append(text)
        self.shared_requests += plan.shared
        return results
