"""Batched decoding in the llama.cpp backend, against the sequential path, on SmolLM2-135M (CPU).

Both models run on one thread (see tests/test_llamacpp_lm.py for why). Speed is not tested here:
benchmarks/bench_generation.py measures it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import memcollab_eval.models  # noqa: E402,F401  (registers "llama_cpp")
from memcollab_eval.models.llamacpp_completion import CompletionTracker, missing_utf8_bytes  # noqa: E402
from memcollab_eval.models.llamacpp_memory import (  # noqa: E402
    MEMORY_SHARE,
    CacheEstimate,
    InsufficientMemoryError,
    KVShape,
    check_cache_fits,
    estimate_cache,
)
from memcollab_eval.models.request_sharing import plan_sharing  # noqa: E402

ARGS = "model=smollm2_135m,n_ctx=512,max_gen_toks=40,seed=7,n_threads=1,progress=False"
QUESTIONS = [
    "List three colours, one per line.",
    "What is 12 times 7? Explain briefly.",
    "Write a Python function that reverses a string.",
    "Name two planets.",
    "Count from one to ten in words.",
    "What is the capital of Italy?",
    "Give a synonym for happy.",
]


def _require_backend() -> None:
    from conftest import require_smollm2

    require_smollm2()


def _build(extra: str) -> Any:
    _require_backend()
    from lm_eval.api.registry import get_model

    return get_model("llama_cpp").create_from_arg_string(
        f"{ARGS},{extra}", {"batch_size": 1, "max_batch_size": None, "device": None}
    )


@pytest.fixture(scope="module")
def sequential() -> Any:
    return _build("n_parallel=1")


@pytest.fixture(scope="module")
def batched() -> Any:
    return _build("n_parallel=3,share_identical=false")


def _instance(context: str, gen_kwargs: dict[str, Any], idx: int = 0) -> Any:
    from lm_eval.api.instance import Instance

    return Instance(request_type="generate_until", doc={}, arguments=(context, gen_kwargs), idx=idx)


def _mixed_requests(lm: Any) -> list[Any]:
    """Seven prompts with different stops and token limits (more requests than slots)."""
    stops = [["\n"], [], ["."], ["\n\n"], [","], [], ["def"]]
    limits = [40, 25, 12, 40, 30, 5, 33]
    return [
        _instance(lm.apply_chat_template([{"role": "user", "content": q}]),
                  {"until": stop, "max_gen_toks": limit, "do_sample": False}, i)
        for i, (q, stop, limit) in enumerate(zip(QUESTIONS, stops, limits, strict=True))
    ]


# ---------------------------------------------------------------------------- pure parts


def test_tracker_stops_like_create_completion() -> None:
    eos = CompletionTracker(max_tokens=10, stop=("\n",))
    assert not eos.push(1, b"Hi", False) and eos.push(2, b"", True)
    assert eos.finish_reason == "stop" and eos.tokens == [1] and eos.decoded() == "Hi"  # EOS is not counted

    stop = CompletionTracker(max_tokens=10, stop=("zz", "b"))
    assert not stop.push(1, b"a", False)
    assert stop.push(2, b"bzz", False)
    # cut at the first *listed* stop that occurs, as create_completion does; lm-eval's
    # postprocessing then cuts at every stop, so the backend returns "a" either way
    assert stop.decoded() == "ab" and stop.tokens == [1, 2]
    assert stop.finish_reason == "stop"

    length = CompletionTracker(max_tokens=2)
    assert not length.push(1, b"x", False) and length.push(2, b"y", False)
    assert length.finish_reason == "length" and length.decoded() == "xy"
    with pytest.raises(RuntimeError):
        length.push(3, b"z", False)


def test_tracker_defers_checks_inside_a_utf8_character() -> None:
    euro = "€".encode()  # three bytes
    assert missing_utf8_bytes(euro[:1]) == 2 and missing_utf8_bytes(euro[:2]) == 1 and missing_utf8_bytes(euro) == 0
    tracker = CompletionTracker(max_tokens=1)
    assert not tracker.push(1, euro[:1], False)  # the limit is reached, but the character is incomplete
    assert not tracker.push(2, euro[1:], False)  # the counter still runs down for one more token
    assert tracker.push(3, b"!", False) and tracker.finish_reason == "length"
    assert tracker.decoded() == "€!"


def test_sharing_plan_keeps_request_order() -> None:
    plan = plan_sharing(["a", "b", "a", "c", "b"])
    assert plan.unique == (0, 1, 3) and plan.source == (0, 1, 0, 2, 1) and plan.shared == 2
    assert [plan.is_copy(i) for i in range(5)] == [False, False, True, False, True]


def test_memory_check_refuses_with_the_sizes_and_a_fitting_n_parallel() -> None:
    shape = KVShape(n_layer=24, n_head=14, n_head_kv=2, key_length=64, value_length=64, n_vocab=151936)  # Qwen 0.5B
    estimate = estimate_cache(shape, n_parallel=8, n_ctx=4096, n_ubatch=512)
    assert estimate.kv_bytes == 8 * 4096 * 24 * 2 * (64 + 64) * 2  # f16 K and V: 384 MiB
    check_cache_fits(estimate, available=4 * 2**30)  # fits in 4 GiB
    check_cache_fits(estimate, available=None)  # unknown memory: no refusal
    with pytest.raises(InsufficientMemoryError, match=r"n_parallel=8 x n_ctx=4096.*about 3 would fit"):
        check_cache_fits(estimate, available=int((estimate.scratch_bytes + 3.5 * estimate.kv_bytes / 8) / MEMORY_SHARE))
    assert isinstance(estimate, CacheEstimate)


# ---------------------------------------------------------------------------- on the real model


def test_memory_refusal_happens_before_allocation() -> None:
    _require_backend()
    from memcollab_eval.models.llamacpp_lm import LlamaCppLM

    with pytest.raises(InsufficientMemoryError, match="Lower n_parallel"):
        LlamaCppLM(model="smollm2_135m", n_ctx=32768, n_parallel=128, n_threads=1, progress=False)
    with pytest.raises(ValueError, match="n_parallel must be at least 1"):
        LlamaCppLM(model="smollm2_135m", n_parallel=0)


def test_batched_results_come_in_request_order_with_their_own_limits(sequential: Any, batched: Any) -> None:
    requests = _mixed_requests(batched)
    sequential.reset_usage()
    batched.reset_usage()
    seq = sequential.generate_until(requests, disable_tqdm=True)
    bat = batched.generate_until(requests, disable_tqdm=True)
    assert len(bat) == len(requests) == len(seq)

    limits = [r.args[1]["max_gen_toks"] for r in requests]
    usage = batched.usage
    assert [u["max_gen_toks"] for u in usage] == limits  # one record per request, in request order
    for request, text, record in zip(requests, bat, usage, strict=True):
        context, kwargs = request.args
        assert record["prompt_tokens"] == len(batched.tok_encode(context))
        assert 0 < record["completion_tokens"] <= kwargs["max_gen_toks"] + 1  # +1: a UTF-8 char may finish
        assert record["truncated"] == (record["finish_reason"] == "length")
        assert not any(stop in text for stop in kwargs["until"])
    assert usage[5]["truncated"] and usage[5]["completion_tokens"] == 5  # a 5-token limit on a long answer
    # Same prompts, same stops: the answers are the sequential ones (rounding may flip a rare token,
    # so the texts are compared where both runs stopped for the same reason at the same length).
    same = [s == b for s, b in zip(seq, bat, strict=True)]
    assert sum(same) >= len(requests) - 1, list(zip(seq, bat, strict=True))
    assert [u["prompt_tokens"] for u in sequential.usage] == [u["prompt_tokens"] for u in usage]


def test_a_request_that_stops_early_frees_its_slot_for_the_next(batched: Any) -> None:
    from memcollab_eval.models.llamacpp_batch import BatchRequest

    prompt = batched.tok_encode(batched.apply_chat_template([{"role": "user", "content": QUESTIONS[4]}]))
    greedy = {"temperature": 0.0, "seed": 1}
    requests = [
        BatchRequest(prompt=prompt, max_tokens=2, stop=(), sampling=greedy),  # stops after 2 tokens
        BatchRequest(prompt=prompt, max_tokens=30, stop=(), sampling=greedy),
        BatchRequest(prompt=prompt, max_tokens=30, stop=(), sampling=greedy),
        BatchRequest(prompt=prompt, max_tokens=30, stop=(), sampling=greedy),  # waits for a free slot
    ]
    order: list[int] = []
    results = batched._batched.generate(requests, on_finish=lambda i, r: order.append(i))
    assert [r.completion_tokens for r in results] == [2, 30, 30, 30]
    assert order[0] == 0  # the short one finishes first ...
    assert results[3].seq_id == results[0].seq_id  # ... and the waiting request takes its slot
    assert results[3].first_step == results[0].last_step + 1  # at the very next step
    assert results[3].first_step < min(results[1].last_step, results[2].last_step)  # while the others run
    assert results[1].text == results[2].text == results[3].text  # same prompt, greedy: same answer


def test_requests_with_one_prompt_compute_it_once(batched: Any) -> None:
    """Several samples of one long prompt: the first computes it, the others copy its cells and
    feed only the last token, then sample from their own logits with their own seeds."""
    from memcollab_eval.models.llamacpp_batch import MIN_SHARED_PROMPT, BatchRequest

    text = " ".join(QUESTIONS * 3)
    prompt = batched.tok_encode(batched.apply_chat_template([{"role": "user", "content": text}]))
    assert len(prompt) >= MIN_SHARED_PROMPT
    greedy = {"temperature": 0.0, "seed": 1}
    results = batched._batched.generate([BatchRequest(prompt=prompt, max_tokens=12, stop=(), sampling=greedy)
                                         for _ in range(3)])
    assert [r.shared_prompt_tokens for r in results] == [0, len(prompt) - 1, len(prompt) - 1]
    assert results[0].text == results[1].text == results[2].text  # the copied cells are the computed ones
    sampled = [BatchRequest(prompt=prompt, max_tokens=12, stop=(), sampling={"temperature": 1.0, "seed": s})
               for s in (11, 12, 13, 14)]  # four requests, three slots: the fourth copies from a running slot
    outs = batched._batched.generate(sampled)
    assert [r.shared_prompt_tokens > 0 for r in outs] == [False, True, True, True]
    assert len({r.text for r in outs}) > 1  # own logits and own seeds after the copy
    again = batched._batched.generate(sampled)
    assert [r.text for r in again] == [r.text for r in outs]  # and reproducible
    short = batched.tok_encode("Name a colour.")
    assert len(short) < MIN_SHARED_PROMPT
    plain = batched._batched.generate([BatchRequest(prompt=short, max_tokens=4, stop=(), sampling=greedy)] * 2)
    assert [r.shared_prompt_tokens for r in plain] == [0, 0]  # a short prompt is cheaper to compute again


def test_seeded_sampling_is_per_request_in_a_batch(batched: Any) -> None:
    prompt = batched.apply_chat_template([{"role": "user", "content": "Write a random word."}])
    seeded = {"until": ["\n"], "max_gen_toks": 12, "do_sample": True, "temperature": 1.0, "seed": 99}
    other = {**seeded, "seed": 5}
    first, _, second = batched.generate_until(
        [_instance(prompt, seeded), _instance(prompt, other), _instance(prompt, seeded)], disable_tqdm=True
    )
    assert first == second  # same seed in two slots of one batch: same sample (sharing is off here)
    unseeded = {k: v for k, v in seeded.items() if k != "seed"}
    outs = batched.generate_until([_instance(prompt, unseeded) for _ in range(6)], disable_tqdm=True)
    assert len(set(outs)) > 1  # default seeds differ per request: six samples, not one


def test_identical_requests_share_one_generation() -> None:
    lm = _build("n_parallel=2")
    prompt = lm.apply_chat_template([{"role": "user", "content": QUESTIONS[3]}])
    greedy = {"until": ["\n"], "max_gen_toks": 16, "do_sample": False}
    requests = [_instance(prompt, greedy), _instance(prompt, {**greedy, "max_gen_toks": 8}), _instance(prompt, greedy)]
    outs = lm.generate_until(requests, disable_tqdm=True)
    assert lm.shared_requests == 1 and outs[0] == outs[2]
    usage = lm.usage
    assert len(usage) == 3 and usage[2]["seconds"] == 0.0 and usage[0]["seconds"] > 0.0
    assert usage[2]["completion_tokens"] == usage[0]["completion_tokens"]
    unseeded = {"until": ["\n"], "max_gen_toks": 8, "do_sample": True, "temperature": 1.0}
    lm.generate_until([_instance(prompt, unseeded), _instance(prompt, unseeded)], disable_tqdm=True)
    assert lm.shared_requests == 1  # samples without a seed are distinct samples, never shared


class _RecordingHook:
    """Stands in for lm-eval's CacheHook (which commits each add_partial to SQLite at once)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        self.added.append((req[0], res))


def test_each_answer_reaches_the_request_cache_as_soon_as_it_finishes() -> None:
    """A long run killed midway keeps what it finished: answers go to lm-eval's cache in finishing
    order, while the call is still running, each shared copy with its source."""
    lm = _build("n_parallel=2")
    hook = _RecordingHook()
    lm.set_cache_hook(hook)
    short_prompt = lm.apply_chat_template([{"role": "user", "content": QUESTIONS[5]}])
    long_prompt = lm.apply_chat_template([{"role": "user", "content": QUESTIONS[4]}])
    long = {"until": [], "max_gen_toks": 30, "do_sample": False}
    short = {"until": [], "max_gen_toks": 2, "do_sample": False}
    seen_when_short_done: list[int] = []
    original = lm._run

    def spy(prepared: Any, bar: Any, on_done: Any = None) -> Any:
        def wrapped(index: int, text: str) -> None:
            on_done(index, text)
            if prepared[index].max_gen_toks == 2:
                seen_when_short_done.append(len(hook.added))
        return original(prepared, bar, on_done=wrapped)

    lm._run = spy
    outs = lm.generate_until(
        [_instance(long_prompt, long), _instance(short_prompt, short), _instance(short_prompt, short)],
        disable_tqdm=True,
    )
    assert [p for p, _ in hook.added] == [short_prompt, short_prompt, long_prompt]  # finishing order
    assert seen_when_short_done == [2]  # both copies written before the long one had finished
    assert [r for _, r in hook.added] == [outs[1], outs[2], outs[0]]


def test_fingerprint_and_agent_schedule_follow_the_mode(sequential: Any, batched: Any) -> None:
    assert sequential.generation_fingerprint.endswith("__seq") and sequential.sequential_generation
    assert batched.generation_fingerprint.endswith("__batch3") and not batched.sequential_generation
    assert sequential.generation_fingerprint.startswith(sequential.tokenizer_name)
    assert batched.get_model_info()["n_parallel"] == 3
