"""The OpenAI-compatible target end to end: llama-cpp-python's server on SmolLM2-135M, on a free localhost
port, answering lm-eval's chat-completions client (the same client path as ``vllm serve``), with the
neutral sampling settings that make its greedy replies byte-identical to the in-process backend's."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import data_dir, require_smollm2

from memcollab_eval.models.generation import build_lm, generate, load_target

API_MODULES = ("aiohttp", "tenacity", "requests", "tqdm")  # what lm-eval's API models check for
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
SERVED_NAME = "smollm2"
GREEDY = {"until": [], "max_gen_toks": 48, "do_sample": False, "temperature": 0.0}
PROMPTS = [
    "What is 12 times 7? Answer briefly.",
    "Write a Python function that reverses a string.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
]


def require(modules: tuple[str, ...], install: str) -> None:
    """Skip (fail under CI, whose .ci/run installs these) when a module is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        message = f"needs {', '.join(missing)}: {install}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def require_api() -> None:
    require(API_MODULES, "pip install -e '.[api]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on SmolLM2, on 127.0.0.1; yields its base URL."""
    require_api()
    require(SERVER_MODULES, "pip install -e '.[serve]' (llama-cpp-python's server extra: fastapi, uvicorn, ...)")
    require_smollm2()
    from memcollab_eval.models.embedded import resolve_model

    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model("smollm2_135m")),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", SERVED_NAME,
             "--verbose", "False"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5) as reply:
                    if SERVED_NAME in reply.read().decode():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def served_target(base: str):
    target = load_target("openai_compatible")
    target.model_args.update(model=SERVED_NAME, base_url=f"{base}/chat/completions", num_concurrent=1)
    return target


def test_the_target_config_sends_the_neutral_settings():
    from memcollab_eval.models.chat_completions import MODEL_NAME, NEUTRAL_SAMPLING
    from memcollab_eval.models.llamacpp_sampling import _SAMPLER_DEFAULTS

    target = load_target("openai_compatible")
    assert target.model == MODEL_NAME
    assert {k: target.model_args[k] for k in NEUTRAL_SAMPLING} == NEUTRAL_SAMPLING
    # the same neutral values as the in-process llama.cpp backend, key for key
    assert all(NEUTRAL_SAMPLING[k] == v for k, v in _SAMPLER_DEFAULTS.items() if k in NEUTRAL_SAMPLING)
    assert NEUTRAL_SAMPLING["repetition_penalty"] == _SAMPLER_DEFAULTS["repeat_penalty"]
    assert set(target.requires) == {"aiohttp", "tenacity", "requests"}


def test_payload_holds_the_neutral_settings_and_the_task_wins():
    require_api()
    from memcollab_eval.models.chat_completions import NEUTRAL_SAMPLING, NeutralChatCompletion

    lm = NeutralChatCompletion(model="m", base_url="http://127.0.0.1:9/v1/chat/completions", top_k=None,
                               presence_penalty=0.5)
    messages = [{"role": "user", "content": "hi"}]
    payload = lm._create_payload(messages, generate=True, gen_kwargs={
        "until": ["END"], "max_gen_toks": 5, "do_sample": False, "temperature": 0.0, "top_p": 0.9})
    assert payload["messages"] == messages and payload["max_tokens"] == 5 and payload["stop"] == ["END"]
    assert payload["temperature"] == 0.0 and payload["top_p"] == 0.9  # the task's own setting
    assert "top_k" not in payload and payload["presence_penalty"] == 0.5  # None drops a key; args override
    assert {k: payload[k] for k in ("min_p", "repeat_penalty", "repetition_penalty", "frequency_penalty")} == {
        k: NEUTRAL_SAMPLING[k] for k in ("min_p", "repeat_penalty", "repetition_penalty", "frequency_penalty")}


def test_greedy_replies_match_the_in_process_backend(server):
    remote = [g.text for g in generate(build_lm(served_target(server)), PROMPTS, GREEDY)]
    local = [g.text for g in generate(build_lm(load_target("smollm2_135m")), PROMPTS, GREEDY)]
    assert all(remote) and remote == local


def test_evaluate_job_against_the_server(server, tmp_path):
    # the demo_handmade bank's entries involve the embedded Qwen models: SmolLM2 takes one's identity, so
    # memory reaches its prompt (its own identity would match no entry and retrieve nothing)
    proc = subprocess.run(
        [sys.executable, "-m", "memcollab_eval", "+target=openai_compatible", "+bank=demo_handmade",
         "target.identity=qwen25_coder_05b", f"target.model_args.model={SERVED_NAME}",
         f"target.model_args.base_url={server}/chat/completions", "limit=1", "benchmarks=[gsm8k]",
         "max_gen_toks=64", f"data_dir={data_dir()}", f"output_dir={tmp_path}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert summary["target"] == "qwen25_coder_05b" and [r["n"] for r in summary["rows"]] == [1]
    assert list(tmp_path.rglob("results_*.json"))
    samples = {}
    for task in ("gsm8k_nomemory", "gsm8k_memcollab"):
        (path,) = tmp_path.rglob(f"samples_{task}_*.jsonl")
        (samples[task],) = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for sample in samples.values():
        assert sample["resps"][0][0].strip(), "the server returned an empty reply"
        assert sample["doc"]["memcollab_verdict"]["status"] in {"pass", "fail", "no_answer"}
    assert samples["gsm8k_memcollab"]["doc"]["memcollab_retrieved"], "no memory reached the prompt"
    assert samples["gsm8k_nomemory"]["doc"]["memcollab_retrieved"] == []
