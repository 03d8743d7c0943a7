"""Log-likelihood scoring for the ``llama_cpp`` lm-eval backend (multiple-choice, perplexity).

A mixin of :class:`memcollab_eval.models.llamacpp_lm.LlamaCppLM`: it needs the loaded
``llama_cpp.Llama`` (``self._llm``, created with ``logits_all=True``), ``n_ctx``,
``progress``, lm-eval's ``cache_hook`` and the tokenizer methods of ``TemplateLM``. Generation
tasks never reach it, so the models can be loaded without per-token logits (much less memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance


class LlamaCppScoring:
    """``loglikelihood`` / ``loglikelihood_rolling`` over llama.cpp logits."""

    _llm: Any
    n_ctx: int
    logits_all: bool
    progress: bool

    def _require_logits(self) -> None:
        if not self.logits_all:
            gib = self.n_ctx * self._llm.n_vocab() * 4 / 2**30
            raise NotImplementedError(
                "this llama_cpp model was loaded without per-token logits, so it supports generation tasks "
                "(output_type: generate_until) only. For loglikelihood / multiple-choice / perplexity tasks load it "
                f"with logits_all=True in model_args (keeps n_ctx x vocab floats, about {gib:.1f} GiB here)."
            )

    def _logits_for(self, inputs: list[int]) -> np.ndarray:
        """Logits row i predicts token i+1 of ``inputs``; reuses the KV cache of a shared prefix.

        Why the prefix reuse: multiple-choice requests share their context, so only the choices
        need evaluating. At least one token is always evaluated so the context's logits are fresh.
        """
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(cached, inputs, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(inputs) - 1)
        llm.n_tokens = common  # eval() drops the KV cache from here on before decoding the rest
        llm._requires_eval = True
        llm.eval(inputs[common:])
        return llm.scores[: len(inputs)]

    def _score(self, context_enc: list[int], continuation_enc: list[int]) -> tuple[float, bool]:
        if not continuation_enc:
            return 0.0, True
        sequence = (list(context_enc) + list(continuation_enc))[-(self.n_ctx + 1) :]
        n = min(len(continuation_enc), len(sequence) - 1)
        rows = np.asarray(self._logits_for(sequence[:-1])[-n:], dtype=np.float64)
        targets = np.asarray(sequence[-n:])
        peak = rows.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        logprob = float((rows[np.arange(n), targets] - log_norm).sum())
        greedy = bool((rows.argmax(axis=1) == targets).all())
        return logprob, greedy

    def _loglikelihood_tokens(
        self, requests: list[tuple[tuple[str, str], list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        self._require_logits()
        out: list[tuple[float, bool]] = []
        for cache_key, context_enc, continuation_enc in tqdm(
            requests, desc="llama_cpp loglikelihood", disable=disable_tqdm or not self.progress
        ):
            answer = self._score(context_enc, continuation_enc)
            out.append(answer)
            if cache_key is not None:
                self.cache_hook.add_partial("loglikelihood", cache_key, answer)
        return out

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole strings, in disjoint windows of at most ``n_ctx`` tokens."""
        self._require_logits()
        out: list[float] = []
        for request in tqdm(
            requests, desc="llama_cpp loglikelihood_rolling", disable=disable_tqdm or not self.progress
        ):
            (string,) = request.args
            windows = map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=self.tok_encode(string, add_special_tokens=False),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            )
            total = sum(self._score(ctx, cont)[0] for ctx, cont in windows)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return out
