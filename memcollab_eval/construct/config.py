"""Structured config of the build command (``python -m memcollab_eval.build``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from memcollab_eval.agent.protocol import AgentConfig
from memcollab_eval.config import AgentConfigNode, SandboxConfigNode, protocol_problems, runtime_problems, to_runtime
from memcollab_eval.verify import SandboxConfig

METHOD_KINDS = ("memcollab", "self", "self_contrast")


@dataclass
class PoolConf:
    """How many problems to sample from each training source (null = all of it)."""

    name: str = MISSING
    math_train: Optional[int] = 0
    gsm8k_train: Optional[int] = 0
    mbpp_train: Optional[int] = 0


@dataclass
class MethodConf:
    """The memory source: cross-model contrast, self-memory, self-contrast, and ablations."""

    name: str = MISSING
    kind: str = "memcollab"  # memcollab | self | self_contrast
    ablation: str = "none"  # none | random | reversed (preferred side)
    samples: int = 1  # samples per problem and model (self_contrast needs > 1)
    temperature: float = 0.0  # > 0 samples; 0 decodes greedily


@dataclass
class GatesConf:
    lint: bool = True  # the abstraction gate (numbers, names, identifiers, answers)
    near_duplicate_threshold: float = 0.9
    # held-out validation: try each category's entries on a few unseen training problems with
    # the target, with and without them, and drop a category whose entries break more than they fix
    validate: bool = False
    validate_target: Optional[str] = None  # a target config name; default: the weakest source (last)
    validate_per_category: int = 3


@dataclass
class BuildBankConf:
    name: str = MISSING
    out_dir: Optional[str] = None  # default: banks/<name>
    version: int = 1
    notes: str = ""


@dataclass
class BuildConf:
    sources: list[str] = field(default_factory=lambda: ["qwen25_coder_15b", "qwen25_coder_05b"])  # strongest first
    summarizer: str = "qwen25_coder_15b"
    pool: PoolConf = MISSING
    method: MethodConf = MISSING
    bank: BuildBankConf = field(default_factory=BuildBankConf)
    gates: GatesConf = field(default_factory=GatesConf)
    sandbox: SandboxConfigNode = field(default_factory=SandboxConfigNode)
    protocol: str = "single_turn"  # how trajectories are made: single_turn | agent
    agent: AgentConfigNode = field(default_factory=AgentConfigNode)
    data_dir: Optional[str] = None
    seed: int = 1234
    work_dir: str = MISSING
    batch_size: int = 4
    max_gen_toks: Optional[int] = None  # trajectories; null = per-benchmark default
    distill_max_gen_toks: int = 160

    def sandbox_config(self) -> SandboxConfig:
        return to_runtime(self.sandbox)

    def agent_config(self) -> AgentConfig:
        return to_runtime(self.agent, sandbox=self.sandbox_config())

    def pool_sizes(self) -> dict[str, int | None]:
        return {"math_train": self.pool.math_train, "gsm8k_train": self.pool.gsm8k_train,
                "mbpp_train": self.pool.mbpp_train}

    def gen_kwargs(self, default_max: int, *, seed: int) -> dict[str, Any]:
        sample = self.method.temperature > 0
        kwargs: dict[str, Any] = {"until": [], "max_gen_toks": self.max_gen_toks or default_max, "do_sample": sample,
                                  "temperature": self.method.temperature}
        if sample:
            kwargs["seed"] = seed
        return kwargs

    def validation_target(self) -> str:
        return self.gates.validate_target or self.sources[-1]

    def out_dir(self) -> Path:
        return Path(self.bank.out_dir or Path("banks") / self.bank.name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def problems(self) -> list[str]:
        """Configuration mistakes, found before any model is loaded."""
        errors = []
        if self.method.kind not in METHOD_KINDS:
            errors.append(f"method.kind {self.method.kind!r} is not one of {METHOD_KINDS}")
        if self.method.kind == "memcollab" and len(self.sources) < 2:
            errors.append("a memcollab bank needs at least two source models (strongest first)")
        if self.method.kind != "memcollab" and len(self.sources) != 1:
            errors.append(f"a {self.method.kind} bank is built from exactly one model: sources=[<target>]")
        if self.method.kind == "self_contrast" and (self.method.samples < 2 or self.method.temperature <= 0):
            errors.append("self_contrast needs method.samples >= 2 and method.temperature > 0")
        errors.extend(protocol_problems(self.protocol))
        errors.extend(runtime_problems(sandbox=self.sandbox, agent=self.agent))
        if len(set(self.sources)) != len(self.sources):
            errors.append(f"sources has duplicates: {self.sources}")
        if not self.data_dir:
            errors.append("bank building reads training splits from local files: set data_dir=... or "
                          "MEMCOLLAB_DATA_DIR to a folder with math_train/train.jsonl, gsm8k/train.jsonl and "
                          "mbpp/{train,validation,prompt}.jsonl (training pools are not shipped with the package)")
        return errors


def register_build_configs() -> None:
    ConfigStore.instance().store(name="build_schema", node=BuildConf)
