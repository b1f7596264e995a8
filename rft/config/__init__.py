"""Run configs: one definition of every field (type, default, help, constraints) and its validation.

- :mod:`rft.config.fields`: :func:`~rft.config.fields.setting`, the one way to declare a field;
- :mod:`rft.config.sections`: the sections (model, data, lora, stages, eval, scoring, scaling);
- :mod:`rft.config.run`: :class:`RunConfig` and :func:`load_config` (YAML → validated → typed);
- :mod:`rft.config.schema`: the JSON Schema generated from the declarations
  (``python -m rft.config.schema --write`` regenerates ``rft/config/run.schema.json``).

This layer imports only :mod:`rft.core` (and TRL, lazily, to check ``trl:`` keys).
"""

from __future__ import annotations

from typing import Any

from rft.config.run import STAGES_HELP, RunConfig, load_config, parse_config
from rft.config.sections import (
    SECTIONS,
    DataConfig,
    EvalConfig,
    GraderPoolSettings,
    LoraSettings,
    ModelSpec,
    RFTStage,
    ScalingSettings,
    ScoringOptions,
    SFTStage,
)
from rft.config.trl import cpu_safe_defaults

__all__ = [
    "SECTIONS",
    "STAGES_HELP",
    "DataConfig",
    "EvalConfig",
    "GraderPoolSettings",
    "LoraSettings",
    "ModelSpec",
    "RFTStage",
    "RunConfig",
    "SFTStage",
    "ScalingSettings",
    "ScoringOptions",
    "build_run_schema",
    "cpu_safe_defaults",
    "load_config",
    "parse_config",
    "run_schema",
]


def __getattr__(name: str) -> Any:
    # the schema module is imported on first use, so `python -m rft.config.schema` runs it fresh
    if name in {"build_run_schema", "run_schema"}:
        from rft.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'rft.config' has no attribute {name!r}")
