"""The sections of a run config, each field declared once with its default, help and constraints.

These are plain settings: no module here imports Ray, TRL or torch at import time, so the
scoring engine (:class:`ScoringOptions`) and the cluster code (:class:`ScalingSettings`)
import them from here, and so does the JSON Schema generator (:mod:`rft.config.schema`).
Every field is declared with :func:`rft.config.fields.setting`; a test fails when one has no
help text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rft.config.fields import Section, setting
from rft.core.errors import ConfigError, did_you_mean

__all__ = [
    "CurriculumSettings",
    "DataConfig",
    "DynamicSamplingSettings",
    "EnvironmentSettings",
    "EvalConfig",
    "GUARD_CHECKS",
    "GraderPoolSettings",
    "GuardSettings",
    "LoraSettings",
    "ModelSpec",
    "RFTStage",
    "SFTStage",
    "ScalingSettings",
    "ScoringOptions",
    "SECTIONS",
]


@dataclass
class ModelSpec(Section):
    """The base model (see :func:`rft.models.resolve.resolve_model`); ``model:`` may be just the name."""

    KEY = "model"

    name: str = setting(help="As the string form.", minLength=1)
    gguf_file: str | None = setting(None, help="GGUF file name inside `name` when `name` is a directory of GGUF files.")
    dtype: str = setting(
        "auto",
        help="Weights dtype for training; auto is float32 on CPU, bfloat16 on a GPU that supports it.",
        enum=["auto", "float32", "bfloat16", "float16"],
    )


@dataclass
class DataConfig(Section):
    """Where the rows come from and how they are read (``data:``)."""

    KEY = "data"

    train: Path = setting(help="Training rows.")
    eval: Path | None = setting(None, help="Held-out rows; when absent, `eval_size` rows are carved out of `train`.")
    eval_size: float = setting(
        0.1,
        help="Carve-out when `eval` is absent: a fraction (< 1) or a row count (>= 1); 0 disables evaluation data.",
        minimum=0,
    )
    format: str = setting(
        "auto",
        help="Row format; auto picks chat for rows with `messages`, else prompt/answer.",
        enum=["auto", "chat", "prompt_answer"],
    )
    prompt_field: str = setting(
        "prompt", help="Column holding the prompt (text or chat messages) in prompt/answer rows."
    )
    answer_field: str | None = setting(
        None,
        help="Column holding the reference output for SFT in prompt/answer rows; null tries `completion`, then `answer`.",
    )
    system_prompt: str | None = setting(None, help="A system message put before every prompt that has none.")
    on_bad_row: str = setting(
        "error",
        help="A malformed row stops with file:line (error) or is skipped and counted (skip).",
        enum=["error", "skip"],
    )
    max_rows: int | None = setting(None, help="Use only the first N training rows.", minimum=1)


@dataclass
class LoraSettings(Section):
    """The LoRA adapter (``lora:``), turned into ``peft.LoraConfig`` by :meth:`to_peft`."""

    KEY = "lora"

    r: int = setting(8, help="Rank.", minimum=1)
    alpha: float = setting(16, help="Scaling numerator (lora_alpha).", exclusiveMinimum=0)
    dropout: float = setting(0.0, help="Dropout on the LoRA path.", minimum=0, maximum=1)
    target_modules: str | list[str] = setting(
        "all-linear",
        help="Modules to adapt: `all-linear` or a list of module names (q_proj, v_proj, …).",
        oneOf=[{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
    )

    def to_peft(self) -> Any:
        """The ``peft.LoraConfig`` for a causal LM (imports peft)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # peft types it int; a float works
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


@dataclass
class SFTStage(Section):
    """The supervised warm start (``stages.sft``); ``trl`` goes to ``trl.SFTConfig``."""

    KEY = "stages.sft"

    enabled: bool = setting(True, help="false skips the stage.")
    trl: dict[str, Any] = setting(
        help="Passed to trl.SFTConfig (max_steps, learning_rate, per_device_train_batch_size, …).", factory=dict
    )


@dataclass
class DynamicSamplingSettings(Section):
    """Dynamic sampling of the GRPO stage (``stages.rft.dynamic_sampling``; DAPO's filter-groups idea).

    >>> DynamicSamplingSettings(enabled=True).max_rounds
    3
    """

    KEY = "stages.rft.dynamic_sampling"

    enabled: bool = setting(
        False,
        help=(
            "Drop the prompt groups whose completions all got the same reward (they teach GRPO nothing) and "
            "generate groups for fresh prompts instead, until the batch holds only informative groups or "
            "`max_rounds` is reached."
        ),
    )
    max_rounds: int = setting(
        3,
        help=(
            "Generation rounds per batch at most, the first included (1 filters nothing). When the rounds run "
            "out, the batch is filled up with the uninformative groups of the first round."
        ),
        minimum=1,
    )


@dataclass
class CurriculumSettings(Section):
    """The pass-rate curriculum of the GRPO stage (``stages.rft.curriculum``).

    A completion passes when its combined reward is at least ``eval.pass_threshold``.

    >>> CurriculumSettings(enabled=True).retire_after
    8
    """

    KEY = "stages.rft.curriculum"

    enabled: bool = setting(
        False,
        help=(
            "Sample training prompts by their running pass rate (a completion passes when its combined reward "
            "is >= eval.pass_threshold): prompts solved every time are retired, prompts never solved are sampled "
            "less. The state is saved in each checkpoint and restored by --resume."
        ),
    )
    retire_after: int = setting(
        8,
        help="A prompt whose last N completions in a row all passed is retired: it is not sampled again.",
        minimum=1,
    )
    never_solved_weight: float = setting(
        0.25,
        help=(
            "Sampling weight of a prompt that was tried and never passed (others weigh 1, retired ones 0); "
            "0 stops sampling it after its first group."
        ),
        minimum=0,
        maximum=1,
    )
    window: int = setting(
        16, help="Completions per prompt that the running pass rate (logged, saved) is computed over.", minimum=1
    )


@dataclass
class RFTStage(Section):
    """The GRPO stage (``stages.rft``); ``trl`` goes to ``trl.GRPOConfig``."""

    KEY = "stages.rft"

    enabled: bool = setting(True, help="false skips the stage.")
    num_generations: int = setting(4, help="Completions sampled per prompt (the GRPO group).", minimum=2)
    temperature: float = setting(1.0, help="Sampling temperature of rollouts.", exclusiveMinimum=0)
    top_p: float = setting(1.0, help="Nucleus sampling of rollouts.", exclusiveMinimum=0, maximum=1)
    max_completion_length: int = setting(64, help="Maximum new tokens per rollout.", minimum=1)
    dynamic_sampling: DynamicSamplingSettings = setting(
        help="Replace zero-variance prompt groups by fresh prompts' groups (DAPO's filter groups).",
        factory=DynamicSamplingSettings,
    )
    curriculum: CurriculumSettings = setting(
        help="Pass-rate curriculum: retire prompts solved every time, sample never-solved ones less.",
        factory=CurriculumSettings,
    )
    trl: dict[str, Any] = setting(
        help="Passed to trl.GRPOConfig (max_steps, learning_rate, beta, loss_type, …).", factory=dict
    )


@dataclass
class EnvironmentSettings(Section):
    """Agentic RFT: the environment whose tools the model calls (``environment:``; a string is its name)."""

    KEY = "environment"

    name: str = setting(
        help=(
            "A registered environment: @rft.environment in a plugin file the graders config lists under "
            "`plugins:`, or one a plugin package registers (rft_register_environments)."
        ),
        minLength=1,
    )
    max_turns: int | None = setting(
        None,
        help="Rounds of tool calls per episode (one more reply follows the last); null: the environment's.",
        minimum=1,
    )
    tool_timeout: float | None = setting(
        None,
        help="Seconds per tool call for tools without their own timeout; null: the environment's.",
        exclusiveMinimum=0,
    )
    chat_template: str = setting(
        "auto",
        help=(
            "How prompts render tools: auto (the model's template when it renders tools, else ChatML with tools "
            "for a ChatML model such as SmolLM2), model, chatml, or a path to a .jinja file."
        ),
        minLength=1,
    )


@dataclass
class EvalConfig(Section):
    """Held-out evaluation (``eval:``)."""

    KEY = "eval"

    enabled: bool = setting(True, help="false skips evaluation.")
    max_rows: int | None = setting(64, help="Evaluate on at most this many held-out rows.", minimum=1)
    do_sample: bool = setting(False, help="false: greedy decoding; true: sample with `temperature`.")
    temperature: float = setting(1.0, help="Sampling temperature when do_sample is true.", exclusiveMinimum=0)
    max_new_tokens: int | None = setting(
        None, help="Tokens per completion; null uses stages.rft.max_completion_length (or 64).", minimum=1
    )
    batch_size: int = setting(16, help="Prompts per generate call.", minimum=1)
    pass_threshold: float = setting(
        1.0,
        help="A sample passes when its reward (and each grader's score, for per-grader pass rates) is >= this.",
    )
    every_steps: int | None = setting(
        None,
        help=(
            "Also evaluate the held-out rows every N RFT steps (and at the stage's last step), with the run's "
            "graders; the adapter with the best held-out `best_by` is kept as `adapter-best/` next to `adapter/`. "
            "null: only before and after each stage."
        ),
        minimum=1,
    )
    best_by: str = setting(
        "pass_rate",
        help=(
            "What `adapter-best/` and the guard's held-out alarm compare: pass_rate, mean_reward, or a grader id "
            "(that grader's held-out mean; an `audit: true` grader measures quality the reward does not train on)."
        ),
        minLength=1,
    )


@dataclass
class ScoringOptions(Section):
    """How graders are run (the ``scoring:`` section of a run config; :mod:`rft.scoring` uses it).

    >>> ScoringOptions(num_workers=4).max_concurrency
    16
    """

    KEY = "scoring"

    executor: str = setting(
        "local",
        help="local: in-process plus worker processes; ray: an actor pool.",
        enum=["local", "ray"],
    )
    num_workers: int = setting(2, help="Worker processes / Ray actors.", minimum=1)
    default_timeout: float | None = setting(
        60.0, help="Seconds per grader call when a grader sets none (null: no limit).", exclusiveMinimum=0
    )
    error_budget: float = setting(
        0.5,
        help=(
            "Share of a grader's calls in one batch that may fail before the run stops with a GraderError "
            "(1 disables the budget). Every error kind counts, whatever the grader's on_error: a fallback "
            "score keeps a flaky grader from stopping the run, not a broken one."
        ),
        minimum=0,
        maximum=1,
    )
    cache: bool = setting(True, help="Score identical (grader, inputs) once per run.")
    address: str | None = setting(
        None, help="Ray address for executor ray (auto, ray://…); null tries RAY_ADDRESS, then a local Ray."
    )
    actor_resources: dict[str, Any] = setting(
        help="Ray options per grader actor, e.g. {num_cpus: 1, resources: {grader: 1}}.", factory=dict
    )
    max_concurrency: int = setting(
        16, help="Concurrent calls inside one Ray actor (lets async graders overlap).", minimum=1
    )
    inline: bool = setting(
        False,
        help=(
            "Local executor only: run graders in this process, without worker processes (fastest, for unit "
            "tests and debugging). A hung sync grader is reported as a timeout but its thread keeps running, "
            "and a grader that crashes its process takes this one with it."
        ),
    )
    cache_size: int = setting(
        100_000, help="Entries kept by the result cache (least recently used dropped first).", minimum=1
    )


#: The guard's checks: held-out vs training reward, completion length, audit graders vs the trained reward.
GUARD_CHECKS = ("heldout", "length", "audit")


@dataclass
class GuardSettings(Section):
    """The reward-hacking guard (``guard:``; :class:`rft.train.guard.Guard` evaluates it during RFT).

    >>> GuardSettings(action="rollback").checks
    ['heldout', 'length', 'audit']
    """

    KEY = "guard"

    action: str = setting(
        "warn",
        help=(
            "What an alarm does: warn (log it and train on), stop (end the RFT stage there; adapter/ is the "
            "last adapter), rollback (end the RFT stage there and make adapter/ the best held-out adapter, "
            "adapter-best/; needs eval.every_steps)."
        ),
        enum=["warn", "stop", "rollback"],
    )
    checks: list[str] = setting(
        help=(
            "Alarms to raise: heldout (training reward rises while held-out quality falls; needs "
            "eval.every_steps), length (mean completion length drifts beyond `length_drift`), audit (`audit: true` "
            "graders fall while the trained reward rises)."
        ),
        factory=lambda: list(GUARD_CHECKS),
        type="array",
        items={"enum": list(GUARD_CHECKS)},
        uniqueItems=True,
    )
    window: int = setting(
        2,
        help="The heldout alarm compares the latest held-out evaluation with the one `window` evaluations before it.",
        minimum=1,
    )
    train_window: int = setting(
        5,
        help=(
            "The length and audit alarms compare the mean over the last `train_window` RFT steps with the mean "
            "over the first `train_window` steps (so they can fire from step 2 × train_window on)."
        ),
        minimum=1,
    )
    min_reward_rise: float = setting(
        0.05, help="How much the trained reward must rise (absolute) for the heldout and audit alarms.", minimum=0
    )
    min_heldout_drop: float = setting(
        0.05,
        help="How much held-out quality (eval.best_by) must fall over the window for the heldout alarm.",
        minimum=0,
    )
    min_audit_drop: float = setting(
        0.05, help="How much an audit grader's mean must fall for the audit alarm.", minimum=0
    )
    length_drift: float = setting(
        1.0,
        help=(
            "The length alarm fires when the recent mean completion length is more than (1 + length_drift) times "
            "the early one, or less than 1 / (1 + length_drift) times it."
        ),
        exclusiveMinimum=0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [c for c in self.checks if c not in GUARD_CHECKS]
        if unknown:
            raise ConfigError(
                f"unknown guard check {unknown[0]!r}; {did_you_mean(unknown[0], GUARD_CHECKS)}", key="guard.checks"
            )


_RESOURCE_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}


@dataclass
class GraderPoolSettings(Section):
    """The shared grader pool (``scaling.graders``)."""

    KEY = "scaling.graders"

    num_actors: int = setting(
        2,
        help="Grader actors in the pool (see the sizing rule in README: actors ≈ completions/s × grader latency / max_concurrency).",
        minimum=1,
    )
    num_cpus: float = setting(1.0, help="CPUs reserved by each grader actor.", minimum=0)
    resources: dict[str, float] = setting(
        help="Custom Ray resources per actor, to place graders on grader nodes, e.g. {grader_node: 1}.",
        factory=dict,
        **_RESOURCE_MAP,
    )
    max_concurrency: int = setting(16, help="Concurrent calls inside one actor (async graders overlap).", minimum=1)

    def actor_resources(self) -> dict[str, Any]:
        """Ray actor options for :attr:`ScoringOptions.actor_resources`.

        >>> GraderPoolSettings(num_cpus=0.5, resources={"grader_node": 1}).actor_resources()
        {'num_cpus': 0.5, 'resources': {'grader_node': 1}}
        """
        out: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.resources:
            out["resources"] = dict(self.resources)
        return out


@dataclass
class ScalingSettings(Section):
    """Training on a Ray cluster (``scaling:``; run by :mod:`rft.cluster.learners`)."""

    KEY = "scaling"

    num_learners: int = setting(
        1,
        help="Data-parallel learners (Ray Train workers); each generates and trains on its share of every batch.",
        minimum=1,
    )
    use_gpu: bool = setting(False, help="Give each learner a GPU (NCCL); false trains on CPUs (gloo).")
    resources_per_learner: dict[str, float] = setting(
        help="Ray resources of one learner, e.g. {CPU: 8, GPU: 1} or a custom resource such as {learner_node: 1}.",
        factory=lambda: {"CPU": 1},
        **_RESOURCE_MAP,
    )
    graders: GraderPoolSettings = setting(
        help="The shared grader pool: Ray actors created once by the driver.", factory=GraderPoolSettings
    )
    storage_path: str | None = setting(
        None,
        help="Ray Train storage (a shared path or s3://…) for its run records and checkpoint copies; null: <output_dir>/ray.",
    )
    resource_timeout_s: float = setting(
        30.0,
        help="Seconds the pre-check waits for the learners and graders to be placeable before failing with what is missing.",
        exclusiveMinimum=0,
        maximum=600,
    )
    autoscaling: bool = setting(
        False,
        help="The cluster adds nodes on demand: a resource the cluster lacks now is waited for (up to resource_timeout_s) instead of failing at once.",
    )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScalingSettings:
        """Build from a schema-validated mapping.

        >>> ScalingSettings.from_dict({"num_learners": 2, "graders": {"num_actors": 4}}).graders.num_actors
        4
        """
        from rft.config.fields import build_section

        built: ScalingSettings = build_section(cls, raw)
        return built

    def learner_resources(self) -> dict[str, float]:
        """One learner's Ray resources (``GPU: 1`` added when ``use_gpu`` and none is named).

        >>> ScalingSettings(use_gpu=True).learner_resources()
        {'CPU': 1.0, 'GPU': 1.0}
        """
        res = {k: float(v) for k, v in self.resources_per_learner.items()}
        if self.use_gpu and not res.get("GPU"):
            res["GPU"] = 1.0
        return res

    def apply_to_scoring(self, scoring: ScoringOptions, *, address: str | None = None) -> None:
        """Point ``scoring`` at the shared Ray grader pool this section describes."""
        scoring.executor = "ray"
        scoring.num_workers = self.graders.num_actors
        scoring.actor_resources = self.graders.actor_resources()
        scoring.max_concurrency = self.graders.max_concurrency
        if address:
            scoring.address = address


#: Every section class, for the help-text test and the schema generator.
SECTIONS: tuple[type[Section], ...] = (
    ModelSpec,
    DataConfig,
    LoraSettings,
    SFTStage,
    DynamicSamplingSettings,
    CurriculumSettings,
    RFTStage,
    EvalConfig,
    GuardSettings,
    ScoringOptions,
    GraderPoolSettings,
    ScalingSettings,
    EnvironmentSettings,
)
