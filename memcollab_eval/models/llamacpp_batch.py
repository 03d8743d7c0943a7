"""Decode up to ``n_parallel`` requests at once with llama.cpp's batch API (continuous batching).

Why: on a CPU, generating one token for one sequence reads every weight of the model once;
generating one token for eight sequences in the same ``llama_decode`` reads them once too. Token
generation is bound by that memory traffic, so a batch of sequences comes nearly for free until
the arithmetic itself saturates the cores.

How: one llama.cpp context with ``n_seq_max = n_parallel`` and a KV cache of ``n_parallel *
n_ctx`` cells split into one stream of ``n_ctx`` per sequence (``kv_unified = false``, so a token
attends only to its own sequence's cells). Every step packs, into one ``llama_batch`` of at most
``n_batch`` tokens, the last sampled token of every generating sequence and then as much of the
waiting prompts as fits, each token tagged with its slot's sequence id. When a sequence stops
(EOS, a stop string, its token limit), its cells are dropped and the next request starts in its
slot, so the batch stays full until the queue runs dry.

Requests with the same prompt (several samples of one distillation prompt, say) compute it once:
a later one waits until the first has its prompt in the cache, then gets a copy of those cells
(``llama_memory_seq_cp``) and feeds only the prompt's last token, for its own logits. A bank build
asks for 3 samples of each ~800-token distillation prompt; with this and the v3 repair retry, the
first 8 replies of the demo_v3 build took 6 min instead of 31.

Each request keeps its own sampler chain (greedy, or temperature with its own seed), built like
the one ``Llama.create_completion`` builds, and its own stop rules
(:class:`~memcollab_eval.models.llamacpp_completion.CompletionTracker`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memcollab_eval.models.llamacpp_completion import CompletionTracker


@dataclass(frozen=True)
class BatchRequest:
    """One generation: prompt tokens (already fitted to ``n_ctx``), limits, stops and sampling.

    ``sampling`` holds the ``create_completion`` sampler arguments made by
    :func:`~memcollab_eval.models.llamacpp_sampling.sampler_args` (``temperature``, ``top_k``,
    ``top_p``, ``min_p``, ``typical_p``, the three penalties and ``seed``).
    """

    prompt: Sequence[int]
    max_tokens: int
    stop: tuple[str, ...]
    sampling: Mapping[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """What one request produced; ``seconds`` runs from its admission to its last token.

    ``seq_id`` is the slot it ran in, ``first_step`` / ``last_step`` the decode steps (counted
    from 0 within one ``generate`` call) of its first prompt chunk and of its last token: they
    show the schedule, e.g. that a request started in the slot an early-stopping one freed.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    seq_id: int
    first_step: int
    last_step: int
    shared_prompt_tokens: int = 0  # prompt tokens copied from another sequence's cells, not computed


# A shorter prompt is computed again rather than copied: copying a sequence's cells moves its whole
# KV stream, which only pays off when it saves a real prefill.
MIN_SHARED_PROMPT = 64


@dataclass
class _Slot:
    index: int
    seq_id: int
    prompt: list[int]
    tracker: CompletionTracker
    sampler: Any
    limit: int  # tokens this sequence may hold (its n_ctx)
    started: float
    first_step: int
    fed: int = 0  # prompt tokens already in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    batch_index: int = -1  # where its logits are in the current batch, -1 = none
    pos: int = 0  # position of the next token written for this sequence
    waits_for: _Slot | None = None  # a slot computing the same prompt, whose cells this one will copy
    shared: int = 0  # prompt tokens copied from another slot

    @property
    def prompt_done(self) -> bool:
        return self.fed >= len(self.prompt)


class BatchDecodeError(RuntimeError):
    """llama.cpp refused a batch (``llama_decode`` returned an error code)."""


class BatchedDecoder:
    """A second llama.cpp context over an already loaded ``llama_cpp.Llama`` for batched decoding.

    It shares the model weights with ``llm`` and copies its context settings (attention type,
    cache types, RoPE), so the per-token arithmetic is the same kernels as the sequential path;
    only the batch shapes differ.
    """

    def __init__(self, llm: Any, n_parallel: int, n_ctx: int, n_batch: int, share_prompts: bool = True) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.share_prompts = bool(share_prompts)
        self._llm = llm
        self.n_parallel = int(n_parallel)
        self.n_ctx = int(n_ctx)
        self.n_batch = int(n_batch)
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = self.n_parallel * self.n_ctx
        params.n_seq_max = self.n_parallel
        params.n_batch = self.n_batch
        params.n_ubatch = min(int(params.n_ubatch) or self.n_batch, self.n_batch)
        params.kv_unified = False
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not ctx:
            raise BatchDecodeError(
                f"llama.cpp could not create a context for n_parallel={self.n_parallel} x n_ctx={self.n_ctx}"
            )
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = int(llm.n_vocab())
        self._penalty_last_n = int(getattr(llm, "last_n_tokens_size", 64))
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._seq_capacity = int(llama_cpp.llama_n_ctx_seq(ctx)) if hasattr(llama_cpp, "llama_n_ctx_seq") else self.n_ctx

    def close(self) -> None:
        """Free the batch and the context (the model stays with ``llm``)."""
        if getattr(self, "_ctx", None):
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ sampling

    def _new_sampler(self, sampling: Mapping[str, Any]) -> Any:
        """A sampler chain equal to the one ``Llama.create_completion`` builds for these arguments."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            lib.llama_sampler_chain_add(chain, sampler)

        add(lib.llama_sampler_init_penalties(
            self._n_vocab,
            self._penalty_last_n,
            float(sampling.get("repeat_penalty", 1.0)),
            float(sampling.get("frequency_penalty", 0.0)),
            float(sampling.get("presence_penalty", 0.0)),
        ))
        temperature = float(sampling.get("temperature", 0.0))
        if temperature == 0.0:
            add(lib.llama_sampler_init_greedy())
        else:
            add(lib.llama_sampler_init_top_k(int(sampling.get("top_k", 0))))
            add(lib.llama_sampler_init_typical(float(sampling.get("typical_p", 1.0)), 1))
            add(lib.llama_sampler_init_top_p(float(sampling.get("top_p", 1.0)), 1))
            add(lib.llama_sampler_init_min_p(float(sampling.get("min_p", 0.0)), 1))
            add(lib.llama_sampler_init_temp(temperature))
            add(lib.llama_sampler_init_dist(int(sampling["seed"]) & 0xFFFFFFFF))
        return chain

    # ------------------------------------------------------------------ batch building

    def _put(self, n: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = 1 if logits else 0

    def _fill_batch(self, slots: Sequence[_Slot]) -> int:
        """Put every generating slot's next token, then prompt chunks, into the batch; returns its size."""
        n = 0
        for slot in slots:
            slot.batch_index = -1
            if slot.next_token is not None:
                self._put(n, slot.next_token, slot.pos, slot.seq_id, True)
                slot.batch_index = n
                slot.pos += 1
                slot.next_token = None
                n += 1
        for slot in slots:
            if slot.prompt_done or slot.waits_for is not None or n >= self.n_batch:
                continue
            take = min(self.n_batch - n, len(slot.prompt) - slot.fed)
            for k in range(take):
                last = slot.fed + k == len(slot.prompt) - 1
                self._put(n, slot.prompt[slot.fed + k], slot.fed + k, slot.seq_id, last)
                if last:
                    slot.batch_index = n
                n += 1
            slot.fed += take
            slot.pos = slot.fed
        self._batch.n_tokens = n
        return n

    # ------------------------------------------------------------------ the loop

    def _admit(self, index: int, request: BatchRequest, seq_id: int, step: int) -> _Slot:
        limit = min(self.n_ctx, self._seq_capacity)
        if not 0 < len(request.prompt) < limit:
            raise ValueError(f"prompt of {len(request.prompt)} tokens does not fit a sequence of {limit} tokens")
        return _Slot(
            index=index,
            seq_id=seq_id,
            prompt=list(request.prompt),
            tracker=CompletionTracker(max_tokens=int(request.max_tokens), stop=request.stop),
            sampler=self._new_sampler(request.sampling),
            limit=limit,
            started=time.perf_counter(),
            first_step=step,
        )

    def _release(self, slot: _Slot, step: int) -> BatchResult:
        self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        self._lib.llama_sampler_free(slot.sampler)
        slot.sampler = None
        return BatchResult(
            text=slot.tracker.decoded(),
            prompt_tokens=len(slot.prompt),
            completion_tokens=len(slot.tracker.tokens),
            finish_reason=str(slot.tracker.finish_reason),
            seconds=time.perf_counter() - slot.started,
            seq_id=slot.seq_id,
            first_step=slot.first_step,
            last_step=step,
            shared_prompt_tokens=slot.shared,
        )

    def _share_source(self, slot: _Slot, active: Sequence[_Slot]) -> _Slot | None:
        """An active slot computing (or done computing) the same prompt, whose cells ``slot`` can copy."""
        if not self.share_prompts or len(slot.prompt) < MIN_SHARED_PROMPT:
            return None
        for other in active:
            if other.waits_for is None and other.prompt == slot.prompt:
                return other
        return None

    def _copy_ready_prompts(self, slots: Sequence[_Slot]) -> None:
        """Give each waiting slot whose source now has its prompt in the cache the source's cells for
        all but the prompt's last token (fed next, so the slot samples from its own logits). A copy
        between the per-sequence streams moves the whole stream, so the source's generated tokens
        come along and are dropped at once."""
        for slot in slots:
            source = slot.waits_for
            if source is None or not source.prompt_done:
                continue
            keep = len(slot.prompt) - 1
            self._lib.llama_memory_seq_cp(self._memory, source.seq_id, slot.seq_id, -1, -1)
            self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
            slot.fed = slot.pos = slot.shared = keep
            slot.waits_for = None

    def _piece(self, token: int) -> bytes:
        return bytes(self._llm.detokenize([token]))

    def generate(
        self,
        requests: Sequence[BatchRequest],
        on_finish: Callable[[int, BatchResult], None] | None = None,
    ) -> list[BatchResult]:
        """Run all ``requests`` with at most ``n_parallel`` in flight; results in request order.

        ``on_finish(index, result)`` is called as each request ends (in finishing order), e.g.
        to move a progress bar.
        """
        lib = self._lib
        if self._ctx is None:
            raise RuntimeError("BatchedDecoder used after close()")
        results: list[BatchResult | None] = [None] * len(requests)
        queue = deque(range(len(requests)))
        free_ids = list(range(self.n_parallel - 1, -1, -1))
        active: list[_Slot] = []
        step = 0
        lib.llama_memory_clear(self._memory, True)
        try:
            while queue or active:
                while queue and free_ids:
                    index = queue.popleft()
                    slot = self._admit(index, requests[index], free_ids.pop(), step)
                    slot.waits_for = self._share_source(slot, active)
                    active.append(slot)
                self._copy_ready_prompts(active)  # a source admitted earlier may be done already
                if self._fill_batch(active) == 0:  # pragma: no cover - every active slot always has work
                    raise RuntimeError("batched decoding stalled with nothing to decode")
                code = lib.llama_decode(self._ctx, self._batch)
                if code != 0:
                    raise BatchDecodeError(
                        f"llama_decode failed with code {code} for a batch of {self._batch.n_tokens} tokens "
                        f"over {len(active)} sequences (1 = no room in the KV cache, 2 = aborted, <0 = error)"
                    )
                self._copy_ready_prompts(active)  # before any source can finish and drop its cells
                still: list[_Slot] = []
                for slot in active:
                    if slot.batch_index >= 0:
                        token = int(lib.llama_sampler_sample(slot.sampler, self._ctx, slot.batch_index))
                        eog = bool(lib.llama_vocab_is_eog(self._vocab, token))
                        finished = slot.tracker.push(token, b"" if eog else self._piece(token), eog)
                        if not finished and slot.pos >= slot.limit:
                            slot.tracker.force_finish("length")  # the sequence's window is full
                            finished = True
                        if finished:
                            result = self._release(slot, step)
                            results[slot.index] = result
                            free_ids.append(slot.seq_id)
                            if on_finish is not None:
                                on_finish(slot.index, result)
                            continue
                        slot.next_token = token
                    still.append(slot)
                active = still
                step += 1
        finally:
            for slot in active:  # an error mid-run: leave the context clean for the next call
                if slot.sampler is not None:
                    lib.llama_sampler_free(slot.sampler)
            lib.llama_memory_clear(self._memory, True)
        return [r for r in results if r is not None]
