"""The run pipeline behind ``rft train``: eval → SFT → eval → RFT → eval → report.

Run directory (``output_dir``)::

    config.resolved.yaml   the config with every default filled in
    run.json               model resolution, stage status
    metrics.jsonl          one record per logged step ({"stage", "step", …TRL logs})
    rollouts.jsonl         every scored RFT completion: prompt, completion, per-grader score/reason/error
    eval.json              held-out results: base, sft, rft
    sft/checkpoints/       TRL checkpoints (complete once they hold rft-complete.json)
    sft/adapter/           the SFT LoRA adapter
    rft/checkpoints/       (each also holds the guard's state, rft-guard.json)
    adapter/               the final LoRA adapter (PeftModel.from_pretrained(base, "adapter"))
    adapter-best/          with eval.every_steps: the adapter with the best held-out eval.best_by
    report.md, *.png       the summary

A stage that finished is skipped on ``--resume``; a stage that was interrupted continues
from its last complete checkpoint with the same data order (TRL's seeded sampler and the
RNG states saved in the checkpoint). Each stage saves a checkpoint at least every
``checkpoint_minutes`` of training (besides TRL's ``save_steps``).

During RFT, ``eval.every_steps`` evaluates the held-out rows every N steps and keeps the
best adapter; ``guard:`` raises alarms (:mod:`rft.train.guard`). A ``rollback`` alarm ends
the RFT stage at that step and makes ``adapter/`` a copy of ``adapter-best/`` (it does not
continue training from the best adapter); ``rft/adapter/`` keeps the last adapter, and
``rft/DONE`` records the alarm.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.config.run import RunConfig
from rft.core.errors import ConfigError, RFTError
from rft.data.rows import DataSplits, load_splits
from rft.train.watch import RFTWatch, cadence_callbacks, check_watch_plan

logger = logging.getLogger(__name__)

__all__ = ["Plan", "RunPaths", "export_merged", "load_trained", "make_plan", "run_training"]

STAGES = ("sft", "rft")


@dataclass
class RunPaths:
    """Where a run keeps its files."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    config = property(lambda self: self.root / "config.resolved.yaml")
    run_json = property(lambda self: self.root / "run.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    rollouts = property(lambda self: self.root / "rollouts.jsonl")
    eval_json = property(lambda self: self.root / "eval.json")
    report = property(lambda self: self.root / "report.md")
    adapter = property(lambda self: self.root / "adapter")
    adapter_best = property(lambda self: self.root / "adapter-best")

    def checkpoints(self, stage: str) -> Path:
        return self.root / stage / "checkpoints"

    def stage_adapter(self, stage: str) -> Path:
        return self.root / stage / "adapter"

    def done(self, stage: str) -> Path:
        return self.root / stage / "DONE"


@dataclass
class Plan:
    """What ``rft train`` will do (``--dry-run`` prints it)."""

    config: RunConfig
    splits: DataSplits
    grader_set: Any
    model: Any  # rft.models.resolve.ResolvedModel
    stages: list[str]
    notes: list[str] = field(default_factory=list)
    environment: Any = None  # rft.Environment of agentic RFT, or None

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        d: dict[str, Any] = {
            "config": cfg.source,
            "output_dir": str(cfg.output_dir),
            "model": {"name": cfg.model.name, "kind": self.model.kind, "path": str(self.model.path)},
            "data": {
                "train_rows": len(self.splits.train),
                "train_rows_with_reference": sum(e.reference is not None for e in self.splits.train),
                "eval_rows": len(self.splits.eval),
                "skipped_rows": self.splits.skipped,
                "columns": sorted(self.splits.columns),
            },
            "graders": [
                {
                    "id": e.id,
                    "grader": e.grader.name,
                    "weight": e.weight,
                    "inputs": list(e.grader.inputs),
                    **({"audit": True} if e.audit else {}),
                }
                for e in self.grader_set
            ]
            if self.grader_set is not None
            else [],
            "formula": getattr(self.grader_set, "formula", None),
            "scoring": {"executor": cfg.scoring.executor, "num_workers": cfg.scoring.num_workers},
            "stages": {},
            "eval": {
                "enabled": cfg.eval.enabled and bool(self.splits.eval),
                "rows": min(len(self.splits.eval), cfg.eval.max_rows or 10**9),
                "every_steps": cfg.eval.every_steps,
                "best_by": cfg.eval.best_by,
            },
            "checkpoint_minutes": {s: cfg.stage_checkpoint_minutes(s) for s in self.stages},
        }
        if cfg.guard is not None:
            d["guard"] = {"action": cfg.guard.action, "checks": list(cfg.guard.checks)}
        if self.environment is not None:
            d["environment"] = self.environment.describe()
        if cfg.model.gguf_file or self.model.gguf_file:
            d["model"]["gguf_file"] = self.model.gguf_file
        if "sft" in self.stages:
            a = cfg.sft_trl_args()
            d["stages"]["sft"] = {
                k: a[k] for k in ("max_steps", "learning_rate", "per_device_train_batch_size") if k in a
            }
        if "rft" in self.stages:
            a = cfg.rft_trl_args()
            d["stages"]["rft"] = {
                k: a[k]
                for k in (
                    "max_steps",
                    "learning_rate",
                    "per_device_train_batch_size",
                    "num_generations",
                    "temperature",
                    "max_completion_length",
                    "beta",
                )
                if k in a
            }
        d["lora"] = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules}
        if self.notes:
            d["notes"] = self.notes
        return d


def make_plan(cfg: RunConfig, *, create_model: bool = False) -> Plan:
    """Validate everything a run needs without training: data rows, graders against the
    data's columns, and that the model resolves. Raises ConfigError / DataError."""
    from rft.models.resolve import resolve_model

    splits = load_splits(cfg.data, seed=cfg.seed)
    stages = [s for s in STAGES if getattr(cfg, s) is not None]
    notes: list[str] = []
    grader_set = None
    if cfg.graders is not None:
        grader_set = cfg.grader_set()
        grader_set.check_inputs(splits.columns, source=str(cfg.data.train))
    if "sft" in stages and not any(e.reference is not None for e in splits.train):
        raise ConfigError(
            "the sft stage needs training rows with a reference output (a final assistant turn, or a "
            "`completion`/`answer` field); none has one. Remove stages.sft or add references",
            file=cfg.source,
            key="stages.sft",
        )
    if cfg.eval.enabled and not splits.eval:
        if cfg.eval.every_steps is not None:
            raise ConfigError(
                "eval.every_steps evaluates held-out rows during RFT, but there are none (data.eval absent and "
                "data.eval_size 0); set data.eval or data.eval_size, or drop eval.every_steps",
                file=cfg.source,
                key="eval.every_steps",
            )
        notes.append("no held-out rows (data.eval absent and data.eval_size 0): evaluation is skipped")
    notes += check_watch_plan(cfg, grader_set, stages)
    if splits.skipped:
        notes.append(f"{splits.skipped} malformed rows skipped (data.on_bad_row: skip)")
    try:
        model = resolve_model(cfg.model.name, base_dir=cfg.base_dir, gguf_file=cfg.model.gguf_file, create=create_model)
    except ConfigError as err:
        raise ConfigError(str(err).split(": ", 1)[-1], file=cfg.source, key="model") from err
    from rft.train.episodes import resolve_environment

    environment = resolve_environment(cfg, grader_set)
    return Plan(
        config=cfg,
        splits=splits,
        grader_set=grader_set,
        model=model,
        stages=stages,
        notes=notes,
        environment=environment,
    )


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop records written after the checkpoint a stage resumes from."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if keep(json.loads(ln))]
    if len(kept) != len(lines):
        path.write_text("".join(ln + "\n" for ln in kept))


def _resume_point(paths: RunPaths, stage: str, resume: bool, *, rollouts: bool = False) -> Path | None:
    """The checkpoint ``stage`` resumes from, or None when it starts from scratch.

    On resume, the stage's metrics (and, with ``rollouts``, the rollouts) logged after
    that checkpoint are dropped, so they are not written twice; when the run was killed
    before the stage's first checkpoint, all of them are dropped.
    """
    from rft.train.callbacks import last_complete_checkpoint

    ckpt = last_complete_checkpoint(paths.checkpoints(stage)) if resume else None
    if ckpt is not None:
        step = int(ckpt.name.rsplit("-", 1)[1])
        _truncate_jsonl(paths.metrics, lambda r: r.get("stage") != stage or r.get("step", 0) <= step)
        if rollouts:
            _truncate_jsonl(paths.rollouts, lambda r: (r.get("step") or 0) < step)
    elif resume:  # killed before the first checkpoint: the stage starts over
        _truncate_jsonl(paths.metrics, lambda r: r.get("stage") != stage)
        if rollouts:
            _truncate_jsonl(paths.rollouts, lambda r: False)
    return ckpt


def run_training(
    cfg: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    extra_callbacks: dict[str, Sequence[Any]] | None = None,
    log: Callable[[str], None] | None = None,
    rft_runner: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run the stages of ``cfg`` into ``cfg.output_dir``; returns the eval results.

    Args:
        resume: continue the run in ``cfg.output_dir`` (finished stages are skipped, an
            interrupted one continues from its last complete checkpoint).
        progress: show progress bars.
        extra_callbacks: more TrainerCallbacks per stage (``{"rft": [...]}``), e.g. for tests.
        log: called with one-line status messages (the CLI prints them).
        rft_runner: runs the RFT stage elsewhere instead of in this process (rft.cluster.learners'
            Ray Train learners); called as ``rft_runner(cfg=, paths=, plan=, executor=, ckpt=, log=)``
            and must leave ``rft/adapter`` and ``rft/DONE`` behind.

    Raises:
        RFTError: config, data, grader or hand-off problems (GraderError when a grader
            exceeds the error budget).
    """
    import yaml

    from rft.models.resolve import load_model
    from rft.scoring import make_executor

    say = log or (lambda msg: logger.info("%s", msg))
    extra_callbacks = extra_callbacks or {}
    paths = RunPaths(cfg.output_dir)
    if paths.root.exists() and any(paths.root.iterdir()) and not resume:
        raise RFTError(
            f"the run directory {str(paths.root)!r} is not empty; continue it with `--resume {paths.root}`, "
            "or choose another with --output-dir"
        )
    if resume and not paths.run_json.exists():
        raise RFTError(f"{str(paths.root)!r} is not an rftkit run directory (no run.json); cannot resume it")
    paths.root.mkdir(parents=True, exist_ok=True)

    plan = make_plan(cfg, create_model=True)
    info = _read_json(paths.run_json, {})
    if resume and info.get("config") and info["config"] != _config_fingerprint(cfg):
        logger.warning("the config differs from the one the run started with; resuming with the new one")
    info.update(
        {
            "config": _config_fingerprint(cfg),
            "model": {
                "name": cfg.model.name,
                "path": str(plan.model.path),
                "gguf_file": plan.model.gguf_file,
                "dtype": cfg.model.dtype,
            },
            "stages": plan.stages,
        }
    )
    info.setdefault("started", time.time())
    _write_json(paths.run_json, info)
    paths.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    results: dict[str, Any] = _read_json(paths.eval_json, {}) if resume else {}
    splits, grader_set = plan.splits, plan.grader_set
    rows = [e.row for e in splits.train]
    do_eval = cfg.eval.enabled and bool(splits.eval)
    max_new = cfg.eval.max_new_tokens or (cfg.rft.max_completion_length if cfg.rft else 64)

    with (
        make_executor(grader_set, cfg.scoring.executor, cfg.scoring) if grader_set is not None else _Null() as executor
    ):

        def _evaluate(model: Any, name: str) -> dict[str, Any]:
            from rft.train.eval import evaluate

            return evaluate(
                model,
                tokenizer,
                splits.eval,
                grader_set,
                executor,
                cfg.eval,
                max_new_tokens=max_new,
                seed=cfg.seed,
                progress=progress,
                desc=f"eval {name}",
                environment=plan.environment,
            )

        def record_eval(name: str, summary: dict[str, Any]) -> None:
            results[name] = summary
            _write_json(paths.eval_json, results)
            say(_eval_line(name, summary))

        def run_eval(name: str, model: Any, tokenizer: Any) -> None:
            if not do_eval or name in results:
                return
            say(f"evaluating {name} on {min(len(splits.eval), cfg.eval.max_rows or 10**9)} held-out rows")
            record_eval(name, _evaluate(model, name))

        model, tokenizer = load_model(plan.model, dtype=cfg.model.dtype)
        if plan.environment is not None and cfg.environment is not None:
            from rft.train.chat_tools import ensure_tool_template

            ensure_tool_template(tokenizer, cfg.environment.chat_template)
            tools = plan.environment.schemas()
            for e in [*splits.train, *splits.eval]:  # SFT traces and prompts show the environment's tools
                e.tools = e.tools or tools
        run_eval("base", model, tokenizer)

        # -- SFT ---------------------------------------------------------------
        if cfg.sft is not None:
            if paths.done("sft").exists():
                say("sft: finished earlier, skipped")
            else:
                from rft.train.callbacks import CheckpointMarker, MetricsWriter, TrainableCheck, quiet_console
                from rft.train.sft import build_sft_trainer

                ckpt = _resume_point(paths, "sft", resume)
                say(f"sft: training{f' from {ckpt}' if ckpt else ''}")
                trainer = build_sft_trainer(
                    model,
                    tokenizer,
                    splits.train,
                    trl_args={**cfg.sft_trl_args(paths.checkpoints("sft")), "disable_tqdm": not progress},
                    lora=cfg.lora,
                    callbacks=[
                        *cadence_callbacks(cfg, "sft"),
                        CheckpointMarker(),
                        MetricsWriter(paths.metrics, "sft", echo=say),
                        TrainableCheck("sft"),
                        *extra_callbacks.get("sft", ()),
                    ],
                )
                quiet_console(trainer, progress=progress)
                trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
                trainer.model.save_pretrained(str(paths.stage_adapter("sft")))
                tokenizer.save_pretrained(str(paths.stage_adapter("sft")))
                paths.done("sft").write_text(json.dumps({"global_step": trainer.state.global_step}))
                model = trainer.model
                del trainer
            if do_eval and "sft" not in results:
                if not _is_peft(model):
                    model = _load_adapter(plan.model, cfg.model.dtype, paths.stage_adapter("sft"), trainable=False)
                run_eval("sft", model, tokenizer)
            final_adapter_src = paths.stage_adapter("sft")

        # -- RFT ---------------------------------------------------------------
        if cfg.rft is not None:
            if paths.done("rft").exists():
                say("rft: finished earlier, skipped")
                model = None
            elif rft_runner is not None:  # learners on a Ray cluster (rft.cluster.learners), same files
                from rft.train.callbacks import last_complete_checkpoint

                ckpt = last_complete_checkpoint(paths.checkpoints("rft")) if resume else None
                step = int(ckpt.name.rsplit("-", 1)[1]) if ckpt is not None else 0
                _truncate_jsonl(paths.metrics, lambda r: r.get("stage") != "rft" or r.get("step", 0) <= step)
                _truncate_jsonl(paths.rollouts, lambda r: (r.get("step") or 0) < step)
                model = None
                rft_runner(cfg=cfg, paths=paths, plan=plan, executor=executor, ckpt=ckpt, log=say)
            else:
                from rft.train.callbacks import CheckpointMarker, MetricsWriter, TrainableCheck, quiet_console
                from rft.train.grpo import build_grpo_trainer
                from rft.train.rewards import RewardBridge

                ckpt = _resume_point(paths, "rft", resume, rollouts=True)
                if cfg.sft is not None:
                    # Hand-off: continue the SFT adapter (trainable), so the final adapter applies to the base model.
                    del model
                    gc.collect()  # free the SFT model before loading the policy
                    policy, lora = (
                        _load_adapter(plan.model, cfg.model.dtype, paths.stage_adapter("sft"), trainable=True),
                        None,
                    )
                else:
                    policy, lora = (model if not _is_peft(model) else model.get_base_model()), cfg.lora
                bridge = RewardBridge(grader_set, executor, rows=rows, rollouts_path=paths.rollouts)
                say(f"rft: training{f' from {ckpt}' if ckpt else ''} with graders {', '.join(grader_set.ids)}")
                watch = RFTWatch.build(
                    cfg,
                    paths,
                    grader_set,
                    ckpt=ckpt,
                    start=results.get("sft" if cfg.sft is not None else "base"),
                    evaluate=(lambda m: _evaluate(m, "rft (in-run)")) if do_eval else None,
                    tokenizer=tokenizer,
                    say=say,
                )
                trainer = build_grpo_trainer(
                    policy,
                    tokenizer,
                    splits.train,
                    bridge,
                    trl_args={**cfg.rft_trl_args(paths.checkpoints("rft")), "disable_tqdm": not progress},
                    lora=lora,
                    dynamic_sampling=cfg.rft.dynamic_sampling,
                    curriculum=cfg.rft.curriculum,
                    pass_threshold=cfg.eval.pass_threshold,
                    environment=plan.environment,
                    callbacks=[
                        *cadence_callbacks(cfg, "rft"),
                        *watch.callbacks,  # before CheckpointMarker: the guard state is in place before the marker
                        CheckpointMarker(),
                        MetricsWriter(paths.metrics, "rft", echo=say),
                        TrainableCheck("rft"),
                        *extra_callbacks.get("rft", ()),
                    ],
                )
                quiet_console(trainer, progress=progress)
                trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
                trainer.model.save_pretrained(str(paths.stage_adapter("rft")), selected_adapters=["default"])
                tokenizer.save_pretrained(str(paths.stage_adapter("rft")))
                done = watch.done_record(int(trainer.state.global_step))
                if done.get("stopped_by"):
                    alarm = done["stopped_by"]
                    say(f"rft: stopped by the guard at step {alarm['step']} ({alarm['kind']}, {alarm['action']})")
                paths.done("rft").write_text(json.dumps(done))
                if watch.last_summary is not None and "rft" not in results and not done.get("final_adapter"):
                    record_eval("rft", watch.last_summary)  # the in-run eval of the last step is the final one
                model = trainer.model
                del trainer
            done = _read_json(paths.done("rft"), {})
            final_adapter_src = paths.stage_adapter("rft")
            if done.get("final_adapter") == "adapter-best" and paths.adapter_best.is_dir():
                from rft.train.callbacks import BEST_META

                final_adapter_src, model = paths.adapter_best, None  # the final eval is adapter-best's
                best = _read_json(paths.adapter_best / BEST_META, {})
                say(f"rft: guard rollback: adapter/ is adapter-best/ (step {best.get('step')})")
                if "rft" not in results and best.get("summary"):
                    record_eval("rft", {**best["summary"], "adapter": "adapter-best", "step": best.get("step")})
            if do_eval and "rft" not in results:
                if model is None:
                    model = _load_adapter(plan.model, cfg.model.dtype, final_adapter_src, trainable=False)
                run_eval("rft", model, tokenizer)

    tmp = paths.root / "adapter.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(final_adapter_src, tmp)
    if paths.adapter.exists():
        shutil.rmtree(paths.adapter)
    tmp.replace(paths.adapter)
    info["finished"] = time.time()
    _write_json(paths.run_json, info)

    from rft.train.report import write_report

    write_report(paths.root)
    say(f"done: adapter in {paths.adapter}, report in {paths.report}")
    return results


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _config_fingerprint(cfg: RunConfig) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _eval_line(name: str, r: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    per = ", ".join(f"{gid} {f(g['mean'])}" for gid, g in r["graders"].items())
    return f"eval {name}: mean reward {f(r['mean_reward'])}, pass rate {f(r['pass_rate'])} ({per})"


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def _load_adapter(resolved: Any, dtype: str, adapter_dir: Path, *, trainable: bool) -> Any:
    from peft import PeftModel

    from rft.models.resolve import load_model

    base, _ = load_model(resolved, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)


def load_trained(run_dir: str | Path, *, merge: bool = False) -> tuple[Any, Any]:
    """Load a run's base model with its final adapter (merged into the weights when ``merge``)."""
    from rft.models.resolve import ResolvedModel

    paths = RunPaths(Path(run_dir))
    info = _read_json(paths.run_json, None)
    if info is None:
        raise RFTError(f"{str(paths.root)!r} is not an rftkit run directory (no run.json)")
    if not paths.adapter.is_dir():
        raise RFTError(
            f"{str(paths.root)!r} has no final adapter yet (the run did not finish); resume it with `rft train CONFIG --resume {paths.root}`"
        )
    m = info["model"]
    resolved = ResolvedModel(m["name"], Path(m["path"]), gguf_file=m.get("gguf_file"))
    from transformers import AutoTokenizer

    model = _load_adapter(resolved, m.get("dtype", "auto"), paths.adapter, trainable=False)
    tokenizer = AutoTokenizer.from_pretrained(str(paths.adapter))
    if merge:
        model = model.merge_and_unload()
    return model, tokenizer


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's base model with its final adapter merged in, as a plain HF model directory."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RFTError(f"{str(out)!r} exists and is not empty; choose an empty or new directory")
    model, tokenizer = load_trained(run_dir, merge=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
