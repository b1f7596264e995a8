"""Run configs: YAML → validated once against the generated JSON Schema → typed dataclasses.

A run config names the model, the data, the graders, the stages (``sft`` then ``rft``),
LoRA, scoring and evaluation. Every key is declared once, with its type, default, help text
and constraints, in :mod:`rft.config.sections` (the sections) and :class:`RunConfig` (the top
level); :mod:`rft.config.schema` generates the JSON Schema from them (shipped as
``rft/config/run.schema.json`` for editors), and ``configs/tiny.yaml`` is a complete example::

    from rft.config import load_config
    cfg = load_config("configs/tiny.yaml")
    cfg.rft.num_generations, cfg.sft_trl_args()["learning_rate"]

Errors are :class:`rft.ConfigError` naming the file, line, key path and the fix; an unknown
key suggests its close match. Relative input paths (model, data, grader files, plugins)
resolve against the config file's directory; ``output_dir`` resolves against the
working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rft.config.fields import build_section, setting
from rft.config.sections import (
    DataConfig,
    EnvironmentSettings,
    EvalConfig,
    GuardSettings,
    LoraSettings,
    ModelSpec,
    RFTStage,
    ScalingSettings,
    ScoringOptions,
    SFTStage,
)
from rft.config.trl import check_reward_options, check_trl_keys, cpu_safe_defaults
from rft.core.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHECKPOINT_MINUTES", "STAGES_HELP", "RunConfig", "load_config", "parse_config"]


#: Default time-based checkpoint cadence of a stage, in minutes of training (``checkpoint_minutes``).
DEFAULT_CHECKPOINT_MINUTES = 2.0

#: Help text of the ``stages:`` mapping, which holds the two stage fields of :class:`RunConfig`.
STAGES_HELP = "Training stages, run in the order sft then rft; either may be alone."


@dataclass
class RunConfig:
    """A validated run config (every field's help text is in its declaration)."""

    model: ModelSpec = setting(
        help=(
            "The base model: a local HF directory, a *.gguf file, `smollm2-135m-instruct` (embedded default), "
            "`tiny` or `tiny:DIR` (a tiny random test model), or a mapping."
        ),
        required=True,
        shorthand=True,
    )
    data: DataConfig = setting(
        help=(
            "Datasets: chat JSONL (`messages`, extra fields become grader inputs), prompt/answer JSONL, CSV, "
            "Parquet, or a saved HF dataset directory."
        ),
        required=True,
    )
    graders: Any = setting(
        help=(
            "The grader set: a path to a grader-set file, a list of grader entries, or a mapping with `graders`, "
            "optional `formula` and `plugins` (same format as grader-set files)."
        ),
        oneOf=[{"type": "string"}, {"type": "array", "minItems": 1}, {"type": "object"}],
    )
    scoring: ScoringOptions = setting(
        help="How graders run: worker processes or Ray actors, timeouts, error budget, cache."
    )
    lora: LoraSettings = setting(help="LoRA adapter (peft.LoraConfig) trained by both stages.")
    sft: SFTStage | None = setting(
        help="Supervised warm start (TRL SFTTrainer + LoRA) on rows with a reference output.", group="stages"
    )
    rft: RFTStage | None = setting(
        help="Reinforcement fine-tuning (TRL GRPOTrainer + LoRA) with rewards from the graders.", group="stages"
    )
    eval: EvalConfig = setting(
        help="Held-out evaluation with the same graders before training, after SFT and after RFT."
    )
    seed: int = setting(0, help="Seed for data order, carve-out, LoRA init and sampling.")
    output_dir: Path = setting(
        Path("runs/run"),
        help="Run directory (relative to the working directory); `rft train --output-dir` overrides it.",
    )
    source: str | None = setting(None, help="The file the config was read from (None when built in code).", key=False)
    base_dir: Path = setting(Path("."), help="The directory relative input paths resolve against.", key=False)
    raw: dict[str, Any] = setting(
        help="The config as written (after validation), for config.resolved.yaml.", factory=dict, key=False
    )
    guard: GuardSettings | None = setting(
        None,
        help=(
            "The reward-hacking guard during RFT: alarms when training reward rises while held-out quality falls, "
            "when completion length drifts, or when `audit: true` graders fall while the trained reward rises; "
            "each alarm is a record in metrics.jsonl and a marked point in the report. Absent: no guard; "
            "`guard: {}` enables it with the defaults (action warn)."
        ),
    )
    checkpoint_minutes: float | None = setting(
        DEFAULT_CHECKPOINT_MINUTES,
        help=(
            "Save a checkpoint at least every this many minutes of training in each stage, so a killed run "
            "resumed with --resume loses minutes, not the stage. A stage whose `trl:` sets save_steps or "
            "save_strategy uses only those unless this key is set too; null: only TRL's save_steps."
        ),
        exclusiveMinimum=0,
    )
    environment: EnvironmentSettings | None = setting(
        None,
        help=(
            "Agentic (multi-turn) RFT: the environment whose tools the model calls during rollouts and held-out "
            "evaluation; graders see the whole trajectory (messages, tool_calls, state, episode). A string is "
            "the environment's name."
        ),
        shorthand=True,
    )
    scaling: ScalingSettings | None = setting(
        None,
        help=(
            "Training on a Ray cluster (rft.cluster): the RFT stage runs on `num_learners` TRL GRPOTrainers under "
            "Ray Train's TorchTrainer, all scoring through one grader actor pool the driver creates (this section "
            "replaces scoring.executor/num_workers/actor_resources). Used with `rft train --address`, RAY_ADDRESS "
            "or `rft submit`; without an address an embedded local Ray runs it. output_dir must be storage every "
            "node reaches."
        ),
    )

    # -- graders --------------------------------------------------------------
    def grader_set(self, *, plugins: Sequence[str] = (), pm: Any = None) -> Any:
        """Build the :class:`rft.GraderSet` of ``graders:`` (errors name this config's keys)."""
        from rft.plugins import grader_set_from_config, grader_set_from_file

        if self.graders is None:
            raise ConfigError(
                "the rft stage and evaluation need graders; add a `graders:` section", file=self.source, key="graders"
            )
        if isinstance(self.graders, str):
            path = self.resolve_path(self.graders)
            if not path.exists():
                raise ConfigError(f"grader-set file {str(path)!r} does not exist", file=self.source, key="graders")
            return grader_set_from_file(path, plugins=plugins, pm=pm)
        prefix = "" if isinstance(self.graders, list) else "graders."
        return grader_set_from_config(
            copy.deepcopy(self.graders),
            file=self.source,
            base_dir=self.base_dir,
            plugins=plugins,
            pm=pm,
            key_prefix=prefix,
        )

    def resolve_path(self, value: str | Path) -> Path:
        """An input path from the config, resolved against the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    # -- TRL arguments -----------------------------------------------------------
    def sft_trl_args(self, output_dir: str | Path | None = None) -> dict[str, Any]:
        """Keyword arguments for ``trl.SFTConfig``: CPU-safe defaults, then ``stages.sft.trl``."""
        if self.sft is None:
            raise ConfigError("the config has no enabled sft stage", file=self.source, key="stages.sft")
        args = cpu_safe_defaults(learning_rate=2e-4)
        args.update(seed=self.seed, output_dir=str(output_dir or self.output_dir / "sft" / "checkpoints"))
        args.update(self.sft.trl)
        return args

    def rft_trl_args(self, output_dir: str | Path | None = None) -> dict[str, Any]:
        """Keyword arguments for ``trl.GRPOConfig``: CPU-safe defaults, the stage's generation
        settings, then ``stages.rft.trl``."""
        if self.rft is None:
            raise ConfigError("the config has no enabled rft stage", file=self.source, key="stages.rft")
        r = self.rft
        args = cpu_safe_defaults(learning_rate=1e-4)
        args.update(
            seed=self.seed,
            output_dir=str(output_dir or self.output_dir / "rft" / "checkpoints"),
            num_generations=r.num_generations,
            temperature=r.temperature,
            top_p=r.top_p,
            max_completion_length=r.max_completion_length,
            per_device_train_batch_size=r.num_generations,
            log_completions=False,
        )
        args.update(r.trl)
        return args

    def stage_checkpoint_minutes(self, stage: str) -> float | None:
        """The time-based checkpoint cadence of ``stage`` (``sft`` or ``rft``), or None.

        ``checkpoint_minutes`` applies unless the stage's ``trl:`` chooses its own cadence
        (``save_steps`` or ``save_strategy``) and the config does not name ``checkpoint_minutes``.

        >>> cfg = parse_config({"model": "tiny", "data": {"train": "t.jsonl"}, "graders": ["exact_match"],
        ...                     "stages": {"rft": {"trl": {"save_steps": 10}}}}, check_trl=False)
        >>> cfg.stage_checkpoint_minutes("rft") is None, cfg.checkpoint_minutes
        (True, 2.0)
        """
        section = self.sft if stage == "sft" else self.rft
        trl_map = section.trl if section is not None else {}
        if self.checkpoint_minutes is None or str(trl_map.get("save_strategy", "steps")) == "no":
            return None
        if ("save_steps" in trl_map or "save_strategy" in trl_map) and "checkpoint_minutes" not in self.raw:
            return None
        return self.checkpoint_minutes

    def to_dict(self) -> dict[str, Any]:
        """The config with every default filled in (written as ``config.resolved.yaml``)."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "output_dir": str(self.output_dir),
            "model": _plain(dataclasses.asdict(self.model)),
            "data": _plain(dataclasses.asdict(self.data)),
            "graders": self.graders,
            "scoring": _plain(dataclasses.asdict(self.scoring)),
            "lora": _plain(dataclasses.asdict(self.lora)),
            "stages": {},
            "eval": _plain(dataclasses.asdict(self.eval)),
        }
        if self.sft is not None:
            out["stages"]["sft"] = _plain(dataclasses.asdict(self.sft))
        if self.rft is not None:
            out["stages"]["rft"] = _plain(dataclasses.asdict(self.rft))
        if self.guard is not None:
            out["guard"] = _plain(dataclasses.asdict(self.guard))
        out["checkpoint_minutes"] = self.checkpoint_minutes
        if self.scaling is not None:
            out["scaling"] = _plain(dataclasses.asdict(self.scaling))
        if self.environment is not None:
            out["environment"] = _plain(dataclasses.asdict(self.environment))
        if self.source:
            out["source"] = str(self.source)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------


def load_config(path: str | Path, *, output_dir: str | Path | None = None, check_trl: bool = True) -> RunConfig:
    """Read, validate and type a run config file.

    The one way a run config is loaded: ``rft train`` (``--dry-run`` too) and ``rft submit``
    call it, so a config that one accepts the others accept, with the same errors.

    Args:
        path: the YAML (or JSON) file.
        output_dir: overrides ``output_dir`` (``rft train --output-dir``).
        check_trl: check ``stages.*.trl`` keys against TRL's config classes (imports TRL).

    Raises:
        ConfigError: naming the file, line and key path, with the fix.
    """
    from rft.core import load_yaml_or_json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror}", file=str(path)) from err
    raw = load_yaml_or_json(text, str(path))
    lines = _yaml_lines(text)
    return parse_config(
        raw, source=str(path), base_dir=path.parent, output_dir=output_dir, check_trl=check_trl, lines=lines
    )


def parse_config(
    raw: Any,
    *,
    source: str | None = None,
    base_dir: str | Path = ".",
    output_dir: str | Path | None = None,
    check_trl: bool = True,
    lines: Mapping[tuple[Any, ...], int] | None = None,
) -> RunConfig:
    """Validate a parsed config mapping against the schema and build a :class:`RunConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"a run config is a mapping of keys (model, data, graders, stages, …), got {type(raw).__name__}",
            file=source,
        )
    _validate(raw, source=source, lines=lines or {})
    raw = copy.deepcopy(dict(raw))

    def where(*keys: Any) -> str | None:
        if source is None:
            return None
        line = (lines or {}).get(tuple(keys))
        return f"{source}:{line}" if line else source

    model_raw = raw["model"]
    model = build_section(ModelSpec, {"name": model_raw} if isinstance(model_raw, str) else model_raw)
    data = build_section(DataConfig, raw["data"])
    stages = raw["stages"]
    sft: SFTStage | None = None
    rft: RFTStage | None = None
    if "sft" in stages and stages["sft"].get("enabled", True):
        sft = build_section(SFTStage, stages["sft"])
    if "rft" in stages and stages["rft"].get("enabled", True):
        rft = build_section(RFTStage, stages["rft"])
    if sft is None and rft is None:
        raise ConfigError(
            "no stage is enabled; enable `stages.sft` or `stages.rft`", file=where("stages"), key="stages"
        )
    ev = build_section(EvalConfig, raw.get("eval", {}))
    graders = raw.get("graders")
    if graders is None and (rft is not None or ev.enabled):
        need = "the rft stage" if rft is not None else "evaluation (eval.enabled)"
        raise ConfigError(
            f"{need} needs graders; add a `graders:` section (a grader-set file path or a list of graders)",
            file=source,
            key="graders",
        )
    if check_trl:
        for stage, trl_cls in (("sft", "SFTConfig"), ("rft", "GRPOConfig")):
            trl_map = (stages.get(stage) or {}).get("trl") or {}
            check_trl_keys(trl_map, trl_cls, stage, where)
    check_reward_options((stages.get("rft") or {}).get("trl") or {}, where)
    cfg = RunConfig(
        model=model,
        data=data,
        graders=graders,
        scoring=build_section(ScoringOptions, raw.get("scoring", {})),
        lora=build_section(LoraSettings, raw.get("lora", {})),
        sft=sft,
        rft=rft,
        eval=ev,
        seed=raw.get("seed", 0),
        output_dir=Path(output_dir if output_dir is not None else raw.get("output_dir", "runs/run")),
        source=source,
        base_dir=Path(base_dir),
        raw=raw,
        guard=build_section(GuardSettings, raw["guard"] or {}) if "guard" in raw else None,
        checkpoint_minutes=raw.get("checkpoint_minutes", DEFAULT_CHECKPOINT_MINUTES),
        scaling=build_section(ScalingSettings, raw["scaling"]) if "scaling" in raw else None,
        environment=_environment(raw.get("environment")),
    )
    cfg.data.train = cfg.resolve_path(cfg.data.train)
    if cfg.data.eval is not None:
        cfg.data.eval = cfg.resolve_path(cfg.data.eval)
    if cfg.rft is not None:
        _check_rft_batch(cfg, cfg.rft, where)
    _check_guard(cfg, where)
    check_learner_features(cfg, where)
    return cfg


def _environment(value: Any) -> EnvironmentSettings | None:
    if value is None:
        return None
    return build_section(EnvironmentSettings, {"name": value} if isinstance(value, str) else value)


def _check_guard(cfg: RunConfig, where: Any) -> None:
    """The in-run eval and guard keys that only make sense together."""
    if cfg.eval.every_steps is not None and not cfg.eval.enabled:
        raise ConfigError(
            "eval.every_steps evaluates held-out rows during RFT, but eval.enabled is false; "
            "set eval.enabled: true or drop eval.every_steps",
            file=where("eval", "every_steps"),
            key="eval.every_steps",
        )
    if cfg.guard is None:
        return
    if cfg.guard.action == "rollback" and cfg.eval.every_steps is None:
        raise ConfigError(
            "guard.action rollback makes adapter/ the best held-out adapter, which needs held-out evaluations "
            "during RFT; set eval.every_steps (e.g. 5), or use action warn or stop",
            file=where("guard", "action"),
            key="guard.action",
        )


def check_learner_features(cfg: RunConfig, where: Any = None) -> None:
    """Refuse what several Ray Train learners cannot do, naming the key (and its line, when loaded).

    Dynamic sampling and the curriculum pick and replace whole prompt groups of a batch, so
    every group of the batch must be in one training process: they run locally or on one
    learner (``scaling.num_learners: 1``). Checked when a config is loaded (so ``--dry-run`` and
    ``rft submit`` say it) and by :func:`rft.cluster.learners.run_distributed`.

    Raises:
        ConfigError: naming the key and the fix.
    """
    scaling = cfg.scaling
    if scaling is None or scaling.num_learners <= 1 or cfg.rft is None:
        return
    for key in ("dynamic_sampling", "curriculum"):
        if getattr(cfg.rft, key).enabled:
            raise ConfigError(
                f"stages.rft.{key} needs every group of a batch in one training process, so it runs with one "
                f"learner; scaling.num_learners is {scaling.num_learners}: set it to 1 or "
                f"stages.rft.{key}.enabled: false",
                file=where("stages", "rft", key) if where is not None else cfg.source,
                key=f"stages.rft.{key}",
            )


def _check_rft_batch(cfg: RunConfig, stage: RFTStage, where: Any) -> None:
    args = cfg.rft_trl_args()
    n = stage.num_generations
    bs = args["per_device_train_batch_size"] * args.get("gradient_accumulation_steps", 1)
    gen_bs = args.get("generation_batch_size") or bs
    if gen_bs % n:
        raise ConfigError(
            f"the generation batch ({gen_bs} = per_device_train_batch_size × gradient_accumulation_steps) must be a "
            f"multiple of num_generations ({n}); set stages.rft.trl.per_device_train_batch_size to a multiple of {n}",
            file=where("stages", "rft"),
            key="stages.rft.trl.per_device_train_batch_size",
        )


def _fmt_path(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _schema_at(schema: Mapping[str, Any], path: Sequence[Any]) -> Mapping[str, Any]:
    node: Any = schema
    for p in path:
        if not isinstance(node, Mapping):
            return {}
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            props = node.get("properties")
            if props is None and "oneOf" in node:
                props = next((o.get("properties") for o in node["oneOf"] if o.get("type") == "object"), None)
            node = (props or {}).get(p, {})
    return node


def _validate(raw: Mapping[str, Any], *, source: str | None, lines: Mapping[tuple[Any, ...], int]) -> None:
    from jsonschema import Draft202012Validator

    from rft.config.schema import run_schema

    schema = run_schema()
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = errors[0]
    path = list(err.absolute_path)

    def loc(p: Sequence[Any]) -> str | None:
        line = None
        for n in range(len(p), -1, -1):
            line = lines.get(tuple(p[:n]))
            if line:
                break
        if source is None:
            return None
        return f"{source}:{line}" if line else source

    kind = err.validator
    if kind == "additionalProperties":
        allowed = list((_schema_at(schema, path).get("properties") or {}).keys())
        unknown = [k for k in err.instance if k not in allowed]
        key = unknown[0]
        raise ConfigError(
            f"unknown key {key!r}; {did_you_mean(key, allowed)}", file=loc(path + [key]), key=_fmt_path(path + [key])
        )
    if kind == "required":
        missing = next(k for k in err.validator_value if k not in err.instance)
        desc = (_schema_at(schema, path + [missing]).get("description") or "").split(";")[0]
        raise ConfigError(
            f"missing required key {missing!r}" + (f" ({desc})" if desc else ""),
            file=loc(path),
            key=_fmt_path(path) or None,
        )
    if kind == "type":
        expected = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        raise ConfigError(
            f"expected {expected}, got {type(err.instance).__name__} {err.instance!r}",
            file=loc(path),
            key=_fmt_path(path),
        )
    if kind == "enum":
        valid = [str(v) for v in err.validator_value]
        raise ConfigError(
            f"{err.instance!r} is not valid; {did_you_mean(str(err.instance), valid)}",
            file=loc(path),
            key=_fmt_path(path),
        )
    if kind == "oneOf":
        desc = _schema_at(schema, path).get("description", "")
        raise ConfigError(f"invalid value {err.instance!r}: {desc}", file=loc(path), key=_fmt_path(path))
    raise ConfigError(f"{err.message}", file=loc(path), key=_fmt_path(path) or None)


def _yaml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path of a YAML document to its 1-based line, for error messages."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[tuple[Any, ...], int] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                out[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return out
