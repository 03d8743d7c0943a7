"""Will ``n_parallel`` sequences of ``n_ctx`` tokens fit? The KV-cache estimate behind the refusal.

Why a check of our own: llama.cpp allocates the whole KV cache when the context is created. Asked
for more than the machine has, it either fails with a bare "failed to create context" or, with
overcommit, succeeds and the process is killed later mid-run by the OOM killer. Batched decoding
multiplies the cache by ``n_parallel``, so ``n_parallel=64, n_ctx=32768`` is one typo away; the
estimate below turns that into a clear message before anything is allocated.

The rule: the K and V caches (``n_layer * n_ctx_total * (n_head_kv * (d_k + d_v))`` elements of
the cache type, f16 by default) plus the compute buffer of one micro-batch (f32 attention scores
``n_head * n_ctx * n_ubatch`` as the non-flash attention materialises them, and f32 logits
``n_vocab * n_ubatch``; within 10% of what llama.cpp 0.3.36 reserves for both embedded models,
whose KV sizes the formula gives exactly) must not exceed
``MEMORY_SHARE`` of the memory available now (``MemAvailable``, capped by a cgroup limit). The
model weights are already loaded (mmap) when the check runs, so they are not counted again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Share of the currently available memory the new cache may take: the rest is headroom for the
# evaluation itself (lm-eval, the sandbox workers, Python objects) and for llama.cpp's other buffers.
MEMORY_SHARE = 0.8
_F16_BYTES = 2
_F32_BYTES = 4


class InsufficientMemoryError(RuntimeError):
    """The KV cache for ``n_parallel * n_ctx`` tokens would not fit into the available memory."""


@dataclass(frozen=True)
class KVShape:
    """What the KV cache size depends on, read from the loaded model."""

    n_layer: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int

    @classmethod
    def from_llama(cls, llm: Any) -> KVShape:
        """Read the shape from a ``llama_cpp.Llama`` (its model handle and GGUF metadata)."""
        import llama_cpp

        model = llm.model
        n_embd = int(llama_cpp.llama_model_n_embd(model))
        n_head = int(llama_cpp.llama_model_n_head(model))
        arch = str(llm.metadata.get("general.architecture", ""))
        head_dim = n_embd // max(n_head, 1)

        def meta_int(key: str) -> int:
            value = llm.metadata.get(f"{arch}.attention.{key}")
            return int(value) if value not in (None, "") else head_dim

        return cls(
            n_layer=int(llama_cpp.llama_model_n_layer(model)),
            n_head=n_head,
            n_head_kv=int(llama_cpp.llama_model_n_head_kv(model)),
            key_length=meta_int("key_length"),
            value_length=meta_int("value_length"),
            n_vocab=int(llm.n_vocab()),
        )


@dataclass(frozen=True)
class CacheEstimate:
    """Bytes the batched context will need, and how they were computed."""

    n_parallel: int
    n_ctx: int
    kv_bytes: int
    scratch_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.kv_bytes + self.scratch_bytes


def estimate_cache(shape: KVShape, n_parallel: int, n_ctx: int, n_ubatch: int,
                   cache_bytes_per_element: int = _F16_BYTES) -> CacheEstimate:
    """KV cache plus compute buffer for ``n_parallel`` sequences of ``n_ctx`` tokens each."""
    tokens = n_parallel * n_ctx
    per_token = shape.n_layer * shape.n_head_kv * (shape.key_length + shape.value_length) * cache_bytes_per_element
    scratch = (shape.n_head * n_ctx + shape.n_vocab) * min(n_ubatch, tokens) * _F32_BYTES
    return CacheEstimate(n_parallel=n_parallel, n_ctx=n_ctx, kv_bytes=per_token * tokens, scratch_bytes=scratch)


def available_memory_bytes() -> int | None:
    """Memory this process can still get: ``MemAvailable``, lowered to the cgroup's remaining
    limit when one is set. None when neither can be read (not Linux)."""
    candidates: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            current = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            candidates.append(max(0, int(limit) - current))
    return min(candidates) if candidates else None


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def check_cache_fits(estimate: CacheEstimate, available: int | None, model_name: str = "the model") -> None:
    """Raise :class:`InsufficientMemoryError` naming the sizes and what to lower when the estimate
    exceeds ``MEMORY_SHARE`` of ``available``; does nothing when ``available`` is unknown."""
    if available is None:
        return
    budget = int(available * MEMORY_SHARE)
    if estimate.total_bytes <= budget:
        return
    kv_per_sequence = estimate.kv_bytes / max(estimate.n_parallel, 1)  # the compute buffer does not grow with it
    fitting = max(0, int((budget - estimate.scratch_bytes) // kv_per_sequence)) if kv_per_sequence else 0
    raise InsufficientMemoryError(
        f"llama_cpp: n_parallel={estimate.n_parallel} x n_ctx={estimate.n_ctx} needs a KV cache of "
        f"{_mib(estimate.kv_bytes)} plus {_mib(estimate.scratch_bytes)} of compute buffer for {model_name}, "
        f"but only {_mib(available)} are available ({MEMORY_SHARE:.0%} = {_mib(budget)} may be used). "
        f"Lower n_parallel (about {fitting} would fit at this n_ctx) or n_ctx."
    )
