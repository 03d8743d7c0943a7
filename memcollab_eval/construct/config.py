"""Structured config of the build command (``python -m memcollab_eval.build``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from memcollab_eval.agent.protocol import AgentConfig
from memcollab_eval.categorize_llm import KINDS as CATEGORIZER_KINDS
from memcollab_eval.config import AgentConfigNode, SandboxConfigNode, protocol_problems, runtime_problems, to_runtime
from memcollab_eval.construct.distill import JUDGED_PROMPT_VERSIONS, PROMPT_VERSIONS
from memcollab_eval.construct.evidence import HELDOUT_RULES, HeldoutRule
from memcollab_eval.construct.judge import RUBRIC_VERSIONS, SCORE_RANGE
from memcollab_eval.construct.preference import SIGNALS
from memcollab_eval.verify import SandboxConfig

METHOD_KINDS = ("memcollab", "self", "self_contrast")


@dataclass
class PoolConf:
    """How many problems to sample from each training source (null = all of it)."""

    name: str = MISSING
    math_train: Optional[int] = 0
    gsm8k_train: Optional[int] = 0
    mbpp_train: Optional[int] = 0
    concepts: Optional[int] = 0  # the open-ended questions shipped in the package (no verifier)


@dataclass
class PreferenceConf:
    """Which signal decides the preferred trajectory (``preference=verifier|judge|labels``).

    ``verifier``: the verifier's pass/fail and MemCollab's rule (the default; banks come out as before).
    ``judge``: a judge model (a target config name, loaded through lm-eval's registry like the sources)
    scores every trajectory 1-5 against the rubric prompt ``rubric_version``; the best score is preferred
    and paired with every trajectory at least ``min_margin`` lower. ``labels``: a JSONL file of human
    preferences ``{"problem_id", "preferred", "unpreferred"}``."""

    name: str = "verifier"
    judge: Optional[str] = None  # judge: a target config name (conf/target/) or a YAML path
    rubric_version: str = "v1"
    judge_max_gen_toks: int = 24  # the rubric asks for one line "SCORE: n"
    judge_batch_size: int = 8  # judge prompts per generate call (llama.cpp decodes them together)
    min_margin: int = 1  # judge: preferred score - unpreferred score >= min_margin
    pass_score: int = 4  # judge: a score that counts as "passed" (self-memory; agreement with the verifier)
    labels: Optional[str] = None  # labels: path of the JSONL file


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
    """Which gates a lesson passes before it enters the bank. The dataclass defaults are the
    gates of the banks built before evidence gating (so their build commands still rebuild them);
    conf/build.yaml turns the evidence gates on for new banks."""

    lint: bool = True  # the abstraction gate (numbers, names, identifiers, answers)
    near_duplicate_threshold: float = 0.9
    difference_lint: bool = False  # the lesson must be about the step its DIFFERENCE line names
    restate_lint: bool = False  # the avoid half must not repeat the enforce half (entry_lint.restates_itself)
    # re-solve: the unpreferred model, given the lesson, must pass the lesson's own source problem
    resolve: bool = False
    resolve_samples: int = 1  # the first greedy, the others sampled (temperature 0.7, seeded)
    resolve_min_pass: int = 1  # of resolve_samples
    # a measurement, not a gate: each lesson's source problem is also re-solved with another pair's lesson
    # (evidence.placebo_lessons), and the manifest compares the two pass counts
    resolve_placebo: bool = False
    # held-out validation: the target tries unseen training problems of the lesson's category with and
    # without the lesson (unit=lesson) or the category's lessons together (unit=category, the old gate)
    validate: bool = False
    validate_target: Optional[str] = None  # a target config name; default: the weakest source (last)
    validate_per_category: int = 3
    validate_unit: str = "category"  # lesson | category
    # lesson unit: admitted when fixed - broken >= validate_min_net and broken <= validate_max_broken
    validate_min_net: int = 1
    validate_max_broken: int = 1
    validate_rule: str = "net"  # net (the two counts above) | sign_test (exact, one-sided, p <= validate_alpha)
    validate_alpha: float = 0.05
    # stop trying a lesson once no answer still to come could admit it (same decisions, fewer generations)
    validate_stop_early: bool = True

    def heldout_rule(self) -> HeldoutRule:
        return HeldoutRule(self.validate_rule, self.validate_min_net, self.validate_max_broken, self.validate_alpha)


# the stages a build can stop after (stop_after): the ones another process can take over from a side directory
STOP_STAGES = ("pool", "trajectories", "verify", "distill", "evidence")
# the order the generating stages take their to-do lists in: a second process with the other order meets the
# first in the middle (trajectories_from / distill_from both ways), so two cores share one source or one summarizer
WORK_ORDERS = ("forward", "reverse")


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
    preference: PreferenceConf = field(default_factory=PreferenceConf)
    sandbox: SandboxConfigNode = field(default_factory=SandboxConfigNode)
    protocol: str = "single_turn"  # how trajectories are made: single_turn | agent
    agent: AgentConfigNode = field(default_factory=AgentConfigNode)
    data_dir: Optional[str] = None
    seed: int = 1234
    work_dir: str = MISSING
    batch_size: int = 4
    max_gen_toks: Optional[int] = None  # trajectories; null = per-benchmark default
    distill_max_gen_toks: int = 160
    distill_prompt_version: str = "v2"  # v3 for new banks (conf/build.yaml)
    distill_samples: int = 1  # candidate replies per pair: the first greedy, the others sampled
    distill_temperature: float = 0.7
    # who tags pool and held-out problems with a category: the keyword rules, or a model (categorize_llm);
    # categorizer_model: a target config name, None = the summarizer. Evaluation reads it from the manifest.
    categorizer: str = "keywords"
    categorizer_model: Optional[str] = None
    categorizer_scan: int = 400  # categorizer=llm: held-out candidates asked per training source, at most
    # several processes for one pool (construct/imports.py): stop after a stage, and take the trajectories
    # other work directories made for the same pool and settings instead of generating them again
    stop_after: Optional[str] = None  # pool | trajectories | verify | distill
    trajectories_from: list[str] = field(default_factory=list)
    distill_from: list[str] = field(default_factory=list)  # summarizer replies made in other work directories
    evidence_from: list[str] = field(default_factory=list)  # re-solve and held-out outcomes made in other work dirs
    work_order: str = "forward"  # forward | reverse: the order the generating stages take their to-do lists

    def sandbox_config(self) -> SandboxConfig:
        return to_runtime(self.sandbox)

    def agent_config(self) -> AgentConfig:
        return to_runtime(self.agent, sandbox=self.sandbox_config())

    def pool_sizes(self) -> dict[str, int | None]:
        sizes = {"math_train": self.pool.math_train, "gsm8k_train": self.pool.gsm8k_train,
                 "mbpp_train": self.pool.mbpp_train}
        if self.pool.concepts != 0:  # only when used: work directories of earlier pools resume unchanged
            sizes["concepts"] = self.pool.concepts
        return sizes

    def needs_data_dir(self) -> bool:
        """Whether any pool source is read from ``data_dir`` (the open-ended one ships in the package)."""
        return any(size != 0 for source, size in self.pool_sizes().items() if source != "concepts")

    def gen_kwargs(self, default_max: int, *, seed: int, temperature: float | None = None) -> dict[str, Any]:
        """Generation settings: the method's temperature unless ``temperature`` is given (the
        extra distillation and re-solve samples); a seed whenever sampling."""
        temperature = self.method.temperature if temperature is None else temperature
        sample = temperature > 0
        kwargs: dict[str, Any] = {"until": [], "max_gen_toks": self.max_gen_toks or default_max, "do_sample": sample,
                                  "temperature": temperature}
        if sample:
            kwargs["seed"] = seed
        return kwargs

    def keeps_difference(self) -> bool:
        """Entries carry their DIFFERENCE line from prompt v3 on (older banks' bytes stay as built)."""
        return self.distill_prompt_version not in ("v1", "v2")

    def categorizer_target(self) -> str:
        return self.categorizer_model or self.summarizer

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
        if self.distill_prompt_version not in PROMPT_VERSIONS:
            errors.append(f"distill_prompt_version {self.distill_prompt_version!r} is not one of {list(PROMPT_VERSIONS)}")
        if self.distill_samples < 1 or self.gates.resolve_samples < 1:
            errors.append("distill_samples and gates.resolve_samples must be >= 1")
        if not 1 <= self.gates.resolve_min_pass <= self.gates.resolve_samples:
            errors.append("gates.resolve_min_pass must lie between 1 and gates.resolve_samples")
        if self.gates.validate_unit not in ("lesson", "category"):
            errors.append(f"gates.validate_unit {self.gates.validate_unit!r} is not one of ['lesson', 'category']")
        if self.gates.validate_rule not in HELDOUT_RULES:
            errors.append(f"gates.validate_rule {self.gates.validate_rule!r} is not one of {list(HELDOUT_RULES)}")
        if not 0 < self.gates.validate_alpha < 1:
            errors.append("gates.validate_alpha must lie between 0 and 1")
        if self.gates.validate and self.gates.validate_per_category < 1:
            errors.append("gates.validate_per_category must be >= 1")
        if self.categorizer not in CATEGORIZER_KINDS:
            errors.append(f"categorizer {self.categorizer!r} is not one of {list(CATEGORIZER_KINDS)}")
        elif self.categorizer_model is not None and self.categorizer != "llm":
            errors.append("categorizer_model is set but categorizer is 'keywords': it names the model of categorizer=llm")
        if self.stop_after is not None and self.stop_after not in STOP_STAGES:
            errors.append(f"stop_after {self.stop_after!r} is not one of {list(STOP_STAGES)}")
        if self.work_order not in WORK_ORDERS:
            errors.append(f"work_order {self.work_order!r} is not one of {list(WORK_ORDERS)}")
        if self.categorizer_scan < 1:
            errors.append("categorizer_scan must be >= 1")
        if len(set(self.sources)) != len(self.sources):
            errors.append(f"sources has duplicates: {self.sources}")
        errors.extend(self.preference_problems())
        if not self.data_dir and self.needs_data_dir():
            errors.append("bank building reads training splits from local files: set data_dir=... or "
                          "MEMCOLLAB_DATA_DIR to a folder with math_train/train.jsonl, gsm8k/train.jsonl and "
                          "mbpp/{train,validation,prompt}.jsonl (training pools are not shipped with the package)")
        return errors


    def preference_problems(self) -> list[str]:
        """Mistakes in the preference signal and in what it is combined with."""
        p, errors = self.preference, []
        open_ended = self.pool.concepts != 0
        if p.name not in SIGNALS:
            return [f"preference {p.name!r} is not one of {list(SIGNALS)}"]
        if p.name == "verifier" and open_ended:
            errors.append("pool.concepts holds open-ended questions, which have no verifier: use preference=judge "
                          "or preference=labels")
        if p.name != "verifier" and self.distill_prompt_version not in JUDGED_PROMPT_VERSIONS:
            errors.append(f"preference={p.name} distills with the judged prompts, which exist for "
                          f"distill_prompt_version {list(JUDGED_PROMPT_VERSIONS)}, not {self.distill_prompt_version!r}")
        if open_ended and (self.gates.resolve or self.gates.validate):
            errors.append("gates.resolve and gates.validate score answers with the verifiers, which open-ended "
                          "questions (pool.concepts) do not have: set gates.resolve=false gates.validate=false")
        if open_ended and self.protocol != "single_turn":
            errors.append("open-ended questions (pool.concepts) are answered single-turn: set protocol=single_turn")
        if p.name == "judge":
            if not p.judge:
                errors.append("preference=judge needs a judge model: preference.judge=<target config name>")
            if p.rubric_version not in RUBRIC_VERSIONS:
                errors.append(f"preference.rubric_version {p.rubric_version!r} is not one of {list(RUBRIC_VERSIONS)}")
            low, high = SCORE_RANGE
            if not 1 <= p.min_margin <= high - low:
                errors.append(f"preference.min_margin must lie between 1 and {high - low}")
            if not low <= p.pass_score <= high:
                errors.append(f"preference.pass_score must lie between {low} and {high}")
            if p.judge_max_gen_toks < 1 or p.judge_batch_size < 1:
                errors.append("preference.judge_max_gen_toks and preference.judge_batch_size must be >= 1")
        if p.name == "labels":
            if not p.labels:
                errors.append("preference=labels needs the file: preference.labels=<path to a JSONL of "
                              '{"problem_id", "preferred", "unpreferred"}>')
            if self.method.kind == "self":
                errors.append("preference=labels pairs two trajectories; self-memory (method=self) has no pairs")
        return errors


def register_build_configs() -> None:
    ConfigStore.instance().store(name="build_schema", node=BuildConf)
