"""Structured-config schemas for the Hydra entry points, one type per concern.

Registered in Hydra's ConfigStore as the root schema, so a typo in a key or a wrong type
fails at composition time with the key named, before any model is loaded. Retrieval, the
sandbox and the agent protocol have one config type each, the runtime dataclass of the module
that uses it; their Hydra nodes are derived from those classes (:func:`hydra_schema`) and
converted back in one place (:func:`to_runtime`), so no field is copied by hand.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING as DC_MISSING
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from memcollab_eval.agent.protocol import AgentConfig
from memcollab_eval.retrieve import RetrievalConfig
from memcollab_eval.verify import SandboxConfig

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
    # a model served by another party: entries with policy no-external-models (or internal) never reach it
    external: bool = False


@dataclass
class BankConf:
    """A memory bank directory (entries.jsonl + manifest.json); path null means no memory."""

    name: str = MISSING
    path: Optional[str] = None
    version: Optional[int] = None  # null: the newest version (README "Governing a shared bank")
    sources: list[str] = field(default_factory=list)
    summarizer: str = ""
    build_command: str = ""
    description: str = ""


def hydra_schema(runtime: type, exposed: tuple[str, ...]) -> type:
    """A Hydra structured-config node for the ``exposed`` fields of a runtime config dataclass.

    Why not the runtime class itself: the runtime configs are frozen (their ``__post_init__``
    validates once and nothing changes them later), and OmegaConf makes a frozen dataclass node
    read-only, so Hydra could not apply command-line overrides to it. The node's field types and
    defaults are read from the runtime class, so nothing is copied by hand; ``exposed`` names the
    keys a user may set (the others keep their runtime defaults). :func:`to_runtime` converts back.
    """
    hints = get_type_hints(runtime)
    spec = []
    for f in fields(runtime):
        if f.name in exposed:
            default = field(default=f.default) if f.default is not DC_MISSING else field(
                default_factory=f.default_factory)
            spec.append((f.name, hints[f.name], default))
    missing = set(exposed) - {name for name, _, _ in spec}
    if missing:
        raise TypeError(f"{runtime.__name__} has no field(s) {sorted(missing)}")
    schema = make_dataclass(f"{runtime.__name__}Node", spec)
    schema.__module__ = __name__  # bound below under the same name, so nodes pickle (launchers send configs)
    schema.__doc__ = f"The Hydra node of :class:`{runtime.__module__}.{runtime.__name__}` ({', '.join(exposed)})."
    schema.runtime_class = runtime  # type: ignore[attr-defined]
    return schema


def to_runtime(node: Any, **extra: Any) -> Any:
    """The runtime config of a node made by :func:`hydra_schema` (its validation runs here)."""
    return node.runtime_class(**{f.name: getattr(node, f.name) for f in fields(node)}, **extra)


RetrievalConfigNode = hydra_schema(RetrievalConfig, ("top_k", "use_categories", "model_filter", "min_score", "ranker",
                                                    "encoder", "selector", "llm_candidates", "categorizer",
                                                    "categorizer_model", "principal", "as_of"))
SandboxConfigNode = hydra_schema(SandboxConfig, ("timeout", "memory_mb", "workers", "allow_weak_isolation"))
AgentConfigNode = hydra_schema(AgentConfig, ("max_turns", "output_chars", "block_timeout"))


# Floors below which the sandbox cannot run an ordinary program, measured on this project's 2-core
# CI machine: a trivial program takes ~0.04 s end to end (at 0.05 s some runs already time out), and
# under a 48 MB address-space limit building a list of a million ints fails with MemoryError (16 MB:
# already 100,000), at 64 MB it passes. Below them code problems fail or time out for want of room
# or time, and code accuracy reads near 0 without a word.
SANDBOX_MIN_TIMEOUT = 0.5  # seconds
SANDBOX_MIN_MEMORY_MB = 64


def max_sandbox_workers() -> int:
    """More sandbox workers than 4 per CPU only queue for the same cores (each is a confined process
    tree started up front)."""
    return max(8, 4 * (os.cpu_count() or 1))


def _timeout_problem(key: str, value: Any) -> list[str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and value >= SANDBOX_MIN_TIMEOUT:
        return []
    return [f"{key} must be a finite number of seconds >= {SANDBOX_MIN_TIMEOUT:g}, got {value!r} (a trivial program "
            "takes ~0.04 s in the sandbox; below that floor every code run times out)"]


def sandbox_problems(node: Any) -> list[str]:
    """Range errors of a sandbox node (the sandbox's own dataclass is owned by verify/ and checks no ranges)."""
    problems = _timeout_problem("sandbox.timeout", node.timeout)
    if node.memory_mb < SANDBOX_MIN_MEMORY_MB:
        problems.append(f"sandbox.memory_mb must be >= {SANDBOX_MIN_MEMORY_MB} (the address-space limit of each "
                        f"program, in MB; below it ordinary programs fail with MemoryError), got {node.memory_mb}")
    top = max_sandbox_workers()
    if not 1 <= node.workers <= top:
        problems.append(f"sandbox.workers must be between 1 and {top} (4 per CPU of this machine, at least 8), "
                        f"got {node.workers}")
    return problems


def agent_problems(node: Any) -> list[str]:
    """What AgentConfig's own checks let through: a NaN or infinite block timeout, or one below the sandbox's floor."""
    return _timeout_problem("agent.block_timeout", node.block_timeout)


_RANGE_CHECKS = {"sandbox": sandbox_problems, "agent": agent_problems}


def runtime_problems(**nodes: Any) -> list[str]:
    """Validation errors of the runtime configs behind ``nodes`` (key -> node), one line each: the
    runtime class's own ``__post_init__`` checks, then the ranges of :data:`_RANGE_CHECKS`."""
    problems = []
    for key, node in nodes.items():
        try:
            to_runtime(node)
        except (TypeError, ValueError) as exc:
            problems.append(str(exc) if str(exc).startswith(f"{key}.") else f"{key}: {exc}")
            continue
        problems.extend(_RANGE_CHECKS.get(key, lambda _: [])(node))
    return problems


def protocol_problems(protocol: str) -> list[str]:
    """A mistake in the protocol key, shared by the evaluate and build commands."""
    return [] if protocol in PROTOCOLS else [f"protocol {protocol!r} is not one of {list(PROTOCOLS)}"]


@dataclass
class AccessConf:
    """Who belongs to which group: ``principals`` maps a principal (``retrieval.principal``) to the
    groups it belongs to; an entry's ``scopes`` may name either."""

    principals: dict[str, list[str]] = field(default_factory=dict)


def access_problems(principal: Optional[str], access: AccessConf) -> list[str]:
    """Names in ``access.principals`` that no entry's scopes could match (spaces, commas)."""
    problems = []
    for who, groups in dict(access.principals).items():
        for name in [who, *groups]:
            if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
                problems.append(f"access.principals: {name!r} is not a name (no spaces or commas)")
    return problems


@dataclass
class EvalConf:
    """The evaluate command: target x bank on a list of benchmarks, with and without memory."""

    target: TargetConf = MISSING
    bank: BankConf = MISSING
    retrieval: RetrievalConfigNode = field(default_factory=RetrievalConfigNode)
    access: AccessConf = field(default_factory=AccessConf)
    sandbox: SandboxConfigNode = field(default_factory=SandboxConfigNode)
    protocol: str = "single_turn"  # single_turn | agent
    agent: AgentConfigNode = field(default_factory=AgentConfigNode)
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

    def retrieval_config(self) -> RetrievalConfig:
        return to_runtime(self.retrieval)

    def sandbox_config(self) -> SandboxConfig:
        return to_runtime(self.sandbox)

    def agent_config(self) -> AgentConfig:
        """The agent protocol's config: its limits, the run's sandbox, and whether turns are
        rendered with the target's chat template."""
        return to_runtime(self.agent, sandbox=self.sandbox_config(), use_chat_template=self.target.apply_chat_template)


def register_configs() -> None:
    ConfigStore.instance().store(name="eval_schema", node=EvalConf)
