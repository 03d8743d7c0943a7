"""Structured-config schemas for the Hydra entry points.

Registered in Hydra's ConfigStore as the root schema, so a typo in a key or a wrong type
fails at composition time with the key named, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

BENCHMARK_NAMES = ("math500", "gsm8k", "mbpp", "humaneval")
PROTOCOLS = ("single_turn", "agent")
DEFAULT_TARGET = "qwen25_coder_05b"
DEFAULT_BANK = "demo"


@dataclass
class TargetConf:
    """An lm-eval model (any registered name) plus the identity used by model-aware retrieval."""

    identity: str = MISSING
    model: str = MISSING
    model_args: dict[str, Any] = field(default_factory=dict)
    apply_chat_template: bool = True
    batch_size: int = 1
    requires: list[str] = field(default_factory=list)  # importable modules the backend needs
    install_hint: str = ""
    description: str = ""


@dataclass
class BankConf:
    """A memory bank directory (entries.jsonl + manifest.json); path null means no memory."""

    name: str = MISSING
    path: Optional[str] = None
    sources: list[str] = field(default_factory=list)
    summarizer: str = ""
    build_command: str = ""
    description: str = ""


@dataclass
class RetrievalConf:
    top_k: int = 3
    use_categories: bool = True
    model_filter: bool = True
    min_score: float = 0.05
    ranker: str = "tfidf"


@dataclass
class SandboxConf:
    timeout: float = 10.0
    memory_mb: int = 1024
    workers: int = 2
    allow_weak_isolation: bool = False

    def runtime(self):
        """The verifier's own config (evaluate and build share this conversion)."""
        from memcollab_eval.verify import SandboxConfig

        return SandboxConfig(timeout=self.timeout, memory_mb=self.memory_mb, workers=self.workers,
                             allow_weak_isolation=self.allow_weak_isolation)


@dataclass
class AgentConf:
    """The agent protocol (``protocol=agent``): at most ``max_turns`` assistant replies, each
    code block's output cut to ``output_chars`` characters, each block stopped after
    ``block_timeout`` seconds in the sandbox."""

    max_turns: int = 5
    output_chars: int = 2000
    block_timeout: float = 10.0

    def runtime(self, sandbox: SandboxConf, **extra: Any):
        """The agent protocol's own config (evaluate and build share this conversion)."""
        from memcollab_eval.agent import AgentConfig

        return AgentConfig(max_turns=self.max_turns, output_chars=self.output_chars,
                           block_timeout=self.block_timeout, sandbox=sandbox.runtime(), **extra)


def protocol_problems(protocol: str, agent: AgentConf) -> list[str]:
    """Mistakes in the protocol keys, shared by the evaluate and build commands."""
    problems = []
    if protocol not in PROTOCOLS:
        problems.append(f"protocol {protocol!r} is not one of {list(PROTOCOLS)}")
    if agent.max_turns < 1:
        problems.append(f"agent.max_turns must be >= 1, got {agent.max_turns}")
    if agent.output_chars < 1:
        problems.append(f"agent.output_chars must be >= 1, got {agent.output_chars}")
    if agent.block_timeout <= 0:
        problems.append(f"agent.block_timeout must be > 0, got {agent.block_timeout}")
    return problems


@dataclass
class EvalConf:
    """The evaluate command: target x bank on a list of benchmarks, with and without memory."""

    target: TargetConf = MISSING
    bank: BankConf = MISSING
    retrieval: RetrievalConf = field(default_factory=RetrievalConf)
    sandbox: SandboxConf = field(default_factory=SandboxConf)
    protocol: str = "single_turn"  # single_turn | agent
    agent: AgentConf = field(default_factory=AgentConf)
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARK_NAMES))
    limit: Optional[int] = 5  # problems per benchmark; null = the whole split
    limits: dict[str, Optional[int]] = field(default_factory=dict)  # per-benchmark override of limit
    subset: str = "first"  # first | seeded: the first `limit` problems or a seeded sample of them
    data_dir: Optional[str] = None
    seed: int = 1234
    max_gen_toks: Optional[int] = None
    use_cache: bool = False
    log_samples: bool = True
    output_dir: str = "outputs"


def register_configs() -> None:
    ConfigStore.instance().store(name="eval_schema", node=EvalConf)
