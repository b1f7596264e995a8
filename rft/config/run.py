"""Run configs: YAML → validated once with the shipped JSON Schema → typed dataclasses.

A run config names the model, the data, the graders, the stages (``sft`` then ``rft``),
LoRA, scoring and evaluation; see ``rft/config/run.schema.json`` for every key with
its help text, and ``configs/tiny.yaml`` for a complete example::

    from rft.config.run import load_config
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
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LoraSettings",
    "ModelSpec",
    "RFTStage",
    "RunConfig",
    "SFTStage",
    "cpu_safe_defaults",
    "load_config",
    "parse_config",
    "run_schema",
]

SCHEMA_PATH = Path(__file__).parent / "run.schema.json"

#: TRL arguments rftkit sets itself; setting them under ``trl:`` is an error naming the right key.
_MANAGED_TRL_KEYS = {
    "output_dir": "output_dir (top level)",
    "seed": "seed (top level)",
    "num_generations": "stages.rft.num_generations",
    "temperature": "stages.rft.temperature",
    "top_p": "stages.rft.top_p",
    "max_completion_length": "stages.rft.max_completion_length",
    "reward_weights": "the graders' `weight:` fields",
    "resume_from_checkpoint": "`rft train --resume RUN`",
}


@functools.cache
def run_schema() -> dict[str, Any]:
    """The JSON Schema of run configs (shipped as ``rft/config/run.schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------
# typed config
# ---------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """The base model (see :func:`rft.models.resolve.resolve_model`)."""

    name: str
    gguf_file: str | None = None
    dtype: str = "auto"


@dataclass
class DataConfig:
    """Where the rows come from and how they are read (``data:``)."""

    train: Path
    eval: Path | None = None
    eval_size: float = 0.1
    format: str = "auto"
    prompt_field: str = "prompt"
    answer_field: str | None = None
    system_prompt: str | None = None
    on_bad_row: str = "error"
    max_rows: int | None = None


@dataclass
class LoraSettings:
    """The LoRA adapter (``lora:``), turned into ``peft.LoraConfig`` by :meth:`to_peft`."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


@dataclass
class SFTStage:
    """The supervised warm start (``stages.sft``); ``trl`` goes to ``trl.SFTConfig``."""

    trl: dict[str, Any] = field(default_factory=dict)


@dataclass
class RFTStage:
    """The GRPO stage (``stages.rft``); ``trl`` goes to ``trl.GRPOConfig``."""

    num_generations: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 64
    trl: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    """Held-out evaluation (``eval:``)."""

    enabled: bool = True
    max_rows: int | None = 64
    do_sample: bool = False
    temperature: float = 1.0
    max_new_tokens: int | None = None
    batch_size: int = 16
    pass_threshold: float = 1.0


@dataclass
class RunConfig:
    """A validated run config.

    Attributes:
        source: the file it was read from (None for configs built in code).
        raw: the config as written (after validation), for ``config.resolved.yaml``.
        graders: the ``graders:`` value as written (path, list or mapping).
        base_dir: the directory relative input paths resolve against.
    """

    model: ModelSpec
    data: DataConfig
    graders: Any
    scoring: Any  # rft.scoring.ScoringOptions
    lora: LoraSettings
    sft: SFTStage | None
    rft: RFTStage | None
    eval: EvalConfig
    seed: int = 0
    output_dir: Path = Path("runs/run")
    source: str | None = None
    base_dir: Path = Path(".")
    raw: dict[str, Any] = field(default_factory=dict)
    scaling: Any = None  # rft.cluster.distributed.ScalingSettings when the config has `scaling:`

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
        if self.scaling is not None:
            out["scaling"] = _plain(dataclasses.asdict(self.scaling))
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


def cpu_safe_defaults(*, learning_rate: float) -> dict[str, Any]:
    """TRL arguments that work on a CPU-only machine and on a GPU.

    TRL's own defaults assume a GPU (``bf16=True``, ``gradient_checkpointing=True``) and
    full fine-tuning (``learning_rate=1e-6``, far too low for LoRA). These are explicit.

    >>> cpu_safe_defaults(learning_rate=2e-4)["activation_checkpointing"]
    False
    """
    cuda = _cuda_bf16()
    return {
        "learning_rate": learning_rate,
        "bf16": cuda,
        "fp16": False,
        "activation_checkpointing": False,  # transformers 5 name of gradient_checkpointing
        "use_cpu": not _cuda_available(),
        "report_to": "none",
        "dataloader_num_workers": 0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_steps": 20,
    }


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _cuda_bf16() -> bool:
    if not _cuda_available():
        return False
    import torch

    return bool(torch.cuda.is_bf16_supported())


# ---------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------


def load_config(path: str | Path, *, output_dir: str | Path | None = None, check_trl: bool = True) -> RunConfig:
    """Read, validate and type a run config file.

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
    from rft.scoring.base import ScoringOptions

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
    model = ModelSpec(name=model_raw) if isinstance(model_raw, str) else ModelSpec(**model_raw)
    data = DataConfig(**{**raw["data"], "train": Path(raw["data"]["train"])})
    if data.eval is not None:
        data.eval = Path(data.eval)
    scoring_raw = raw.get("scoring", {})
    valid_scoring = [f.name for f in dataclasses.fields(ScoringOptions)]
    for key in scoring_raw:
        if key not in valid_scoring:
            raise ConfigError(
                f"unknown key {key!r}; {did_you_mean(key, valid_scoring)}",
                file=where("scoring", key),
                key=f"scoring.{key}",
            )
    try:
        scoring = ScoringOptions(**scoring_raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err), file=where("scoring"), key="scoring") from err
    lora = LoraSettings(**raw.get("lora", {}))
    stages = raw["stages"]
    sft = rft = None
    if "sft" in stages and stages["sft"].get("enabled", True):
        sft = SFTStage(trl=dict(stages["sft"].get("trl") or {}))
    if "rft" in stages and stages["rft"].get("enabled", True):
        kw = {k: v for k, v in stages["rft"].items() if k != "enabled"}
        rft = RFTStage(**{**kw, "trl": dict(kw.get("trl") or {})})
    if sft is None and rft is None:
        raise ConfigError(
            "no stage is enabled; enable `stages.sft` or `stages.rft`", file=where("stages"), key="stages"
        )
    ev = EvalConfig(**raw.get("eval", {}))
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
            _check_trl_keys(trl_map, trl_cls, stage, where)
    cfg = RunConfig(
        model=model,
        data=data,
        graders=graders,
        scoring=scoring,
        lora=lora,
        sft=sft,
        rft=rft,
        eval=ev,
        seed=raw.get("seed", 0),
        output_dir=Path(output_dir if output_dir is not None else raw.get("output_dir", "runs/run")),
        source=source,
        base_dir=Path(base_dir),
        raw=raw,
    )
    cfg.data.train = cfg.resolve_path(cfg.data.train)
    if cfg.data.eval is not None:
        cfg.data.eval = cfg.resolve_path(cfg.data.eval)
    if cfg.rft is not None:
        _check_rft_batch(cfg, where)
    if "scaling" in raw:
        from rft.cluster.distributed import ScalingSettings

        cfg.scaling = ScalingSettings.from_dict(raw["scaling"])
    return cfg


def _check_rft_batch(cfg: RunConfig, where: Any) -> None:
    args = cfg.rft_trl_args()
    n = cfg.rft.num_generations  # type: ignore[union-attr]
    bs = args["per_device_train_batch_size"] * args.get("gradient_accumulation_steps", 1)
    gen_bs = args.get("generation_batch_size") or bs
    if gen_bs % n:
        raise ConfigError(
            f"the generation batch ({gen_bs} = per_device_train_batch_size × gradient_accumulation_steps) must be a "
            f"multiple of num_generations ({n}); set stages.rft.trl.per_device_train_batch_size to a multiple of {n}",
            file=where("stages", "rft"),
            key="stages.rft.trl.per_device_train_batch_size",
        )


@functools.cache
def _trl_fields(cls_name: str) -> frozenset[str]:
    import trl

    cls = getattr(trl, cls_name)
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def _check_trl_keys(trl_map: Mapping[str, Any], cls_name: str, stage: str, where: Any) -> None:
    valid = _trl_fields(cls_name)
    for key in trl_map:
        path = f"stages.{stage}.trl.{key}"
        if key in _MANAGED_TRL_KEYS and not (key in ("temperature", "top_p") and stage == "sft"):
            raise ConfigError(
                f"{key!r} is set by rftkit; set {_MANAGED_TRL_KEYS[key]} instead",
                file=where("stages", stage, "trl", key),
                key=path,
            )
        if key not in valid:
            close = did_you_mean(key, valid)
            hint = (
                close.split(" (valid:")[0] if close.startswith("did you mean") else "see the fields of trl." + cls_name
            )
            raise ConfigError(
                f"unknown trl.{cls_name} argument {key!r}; {hint}", file=where("stages", stage, "trl", key), key=path
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
