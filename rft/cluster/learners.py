"""Training on a Ray cluster: the RFT stage on Ray Train learners sharing one grader pool.

Where a run goes is decided by :func:`rft.scoring.ray.connect` (explicit address, then
``RAY_ADDRESS``, then an embedded local Ray); :func:`rft.cluster.resources.check_resources`
runs before any work is scheduled. The settings are the config's ``scaling:`` section
(:class:`rft.config.ScalingSettings`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.cluster.resources import check_resources, describe_resources, scaling_requests
from rft.config import RunConfig, ScalingSettings
from rft.config.run import check_learner_features
from rft.core.errors import RFTError
from rft.scoring.ray import ClusterError, connect

logger = logging.getLogger(__name__)

__all__ = ["TRAIN_WORKER_ENV", "LearnerRunner", "run_distributed"]

#: Environment set for every Ray Train worker (Ray Train's print patch floods the logs with bytecode).
TRAIN_WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "TOKENIZERS_PARALLELISM": "false"}


def run_distributed(
    cfg: RunConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    progress: bool = False,
    log: Any = None,
    extra_callbacks: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """``rft train`` on Ray: the pipeline of :func:`rft.train.pipeline.run_training` with its
    RFT stage on ``scaling.num_learners`` learners and one shared grader pool.

    The driver (this process) connects, checks that the cluster can host the learners and
    the grader pool (failing within ``scaling.resource_timeout_s`` naming what is missing),
    creates the grader pool (:class:`rft.scoring.ray.RayExecutor`) and runs the pipeline;
    evaluation and an SFT stage run in the driver. The learners (TRL GRPOTrainers under Ray
    Train's TorchTrainer) get copies of the executor, which call the same actors.

    Args:
        cfg: a :class:`rft.config.RunConfig`; a config without ``scaling:`` gets the defaults
            (1 learner, 2 grader actors).
        address: the Ray cluster (else ``RAY_ADDRESS``, else an embedded local Ray).
        extra_callbacks: TrainerCallbacks per stage; picklable ones for ``rft`` run on every learner.

    Returns:
        the evaluation results, as :func:`~rft.train.pipeline.run_training`.
    """
    from rft.train.pipeline import run_training

    if cfg.scaling is None:
        cfg.scaling = ScalingSettings()
    scaling: ScalingSettings = cfg.scaling
    check_learner_features(cfg)  # a config built in code was not checked at load
    scaling.apply_to_scoring(cfg.scoring, address=address)
    started = connect(address, dashboard=True)
    try:
        check_resources(
            scaling_requests(scaling), timeout_s=scaling.resource_timeout_s, autoscaling=scaling.autoscaling
        )
        runner = LearnerRunner(scaling, progress=progress, extra_callbacks=list((extra_callbacks or {}).get("rft", ())))
        others = {k: v for k, v in (extra_callbacks or {}).items() if k != "rft"}
        return run_training(cfg, resume=resume, progress=progress, log=log, extra_callbacks=others, rft_runner=runner)
    finally:
        if started:  # leave the cluster as we found it: disconnect (a local Ray stops)
            import ray

            ray.shutdown()


@dataclass
class LearnerRunner:
    """Runs the RFT stage on Ray Train learners (the ``rft_runner`` hook of ``run_training``)."""

    scaling: ScalingSettings
    progress: bool = False
    extra_callbacks: list[Any] = field(default_factory=list)

    def __call__(self, *, cfg: Any, paths: Any, plan: Any, executor: Any, ckpt: Path | None, log: Any) -> None:
        """Train, then leave ``paths.stage_adapter("rft")`` and ``paths.done("rft")`` as the
        in-process stage would (rank 0 writes them)."""
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        s = self.scaling
        storage = s.storage_path or str(Path(paths.root).resolve() / "ray")
        log(
            f"rft: {s.num_learners} learner(s) ({'GPU' if s.use_gpu else 'CPU'}, {describe_resources(s.learner_resources())} each) "
            f"under Ray Train, scoring through {len(executor.actors)} shared grader actors; storage {storage}"
        )
        loop_config = {
            "cfg": cfg,
            "root": str(Path(paths.root).resolve()),
            "model": plan.model,
            "examples": plan.splits.train,
            # the in-run held-out evaluation and the guard (rank 0): the rows and where the stage starts
            "eval_rows": plan.splits.eval if cfg.eval.enabled else [],
            "start": _start_summary(paths, cfg),
            "executor": executor,  # a copy in each learner; it calls the driver's actors
            "ckpt": str(ckpt) if ckpt else None,
            "progress": self.progress,
            "callbacks": self.extra_callbacks,
        }
        trainer = TorchTrainer(
            _learner_loop,
            train_loop_config=loop_config,
            torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=s.num_learners,
                use_gpu=s.use_gpu,
                resources_per_worker=s.learner_resources(),
            ),
            # Ray Train v2's RunConfig (mypy sees the v1 class ray.train re-exports when v2 is off)
            run_config=RunConfig(  # type: ignore[call-arg]
                name=f"rft-{Path(paths.root).name}",
                storage_path=storage,
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                failure_config=FailureConfig(max_failures=0),
                worker_runtime_env={"env_vars": dict(TRAIN_WORKER_ENV)},
            ),
        )
        try:
            trainer.fit()
        except Exception as err:  # Ray wraps learner errors: surface the learner's own RFTError
            cause = _root_cause(err)
            if isinstance(cause, RFTError):
                raise cause from err
            raise ClusterError(f"the learners failed: {type(cause).__name__}: {cause}") from err
        if not paths.done("rft").exists():
            raise ClusterError(
                f"the learners finished without writing {paths.done('rft')}; see the Ray Train logs in {storage}"
            )
        alarm = json.loads(paths.done("rft").read_text()).get("stopped_by")
        if alarm:
            log(f"rft: stopped by the guard at step {alarm['step']} ({alarm['kind']}, {alarm['action']})")


def _start_summary(paths: Any, cfg: Any) -> dict[str, Any] | None:
    """The held-out evaluation the RFT stage starts from (after SFT, else the base model), if made."""
    if not paths.eval_json.is_file():
        return None
    results = json.loads(paths.eval_json.read_text())
    found = results.get("sft" if cfg.sft is not None else "base")
    return found if isinstance(found, dict) else None


def _root_cause(err: BaseException) -> BaseException:
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = getattr(err, "cause", None) or getattr(err, "worker_failures", None) or err.__cause__
        if isinstance(nxt, Mapping):
            nxt = next(iter(nxt.values()), None)
        if not isinstance(nxt, BaseException):
            break
        err = nxt
    return err


def _learner_loop(config: dict[str, Any]) -> None:
    """One learner (a Ray Train worker): a TRL GRPOTrainer scoring through the shared pool.

    Rank 0 alone writes the run directory and runs the in-run held-out evaluation and the guard
    (:class:`rft.train.watch.RFTWatch`); :class:`rft.train.callbacks.SyncStop` makes every rank
    stop where rank 0 decides to.
    """
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from rft.models.resolve import load_model
    from rft.train.callbacks import CheckpointMarker, MetricsWriter, SyncStop, TrainableCheck, quiet_console
    from rft.train.chat_tools import ensure_tool_template
    from rft.train.episodes import resolve_environment
    from rft.train.eval import evaluate
    from rft.train.grpo import build_grpo_trainer
    from rft.train.pipeline import RunPaths
    from rft.train.rewards import RewardBridge
    from rft.train.watch import RFTWatch

    for key, value in TRAIN_WORKER_ENV.items():
        os.environ.setdefault(key, value)
    rank = ray.train.get_context().get_world_rank()
    world = ray.train.get_context().get_world_size()
    cfg = config["cfg"]
    paths = RunPaths(config["root"])
    examples = config["examples"]
    policy, tokenizer = load_model(config["model"], dtype=cfg.model.dtype)
    executor = config["executor"]
    # the environment is looked up here by name (plugin files load in this process), not shipped
    environment = resolve_environment(cfg, executor.grader_set)
    if environment is not None:
        ensure_tool_template(tokenizer, cfg.environment.chat_template)
    lora = cfg.lora
    if cfg.sft is not None:  # continue the SFT adapter (trainable), as the in-process pipeline does
        from peft import PeftModel

        policy, lora = PeftModel.from_pretrained(policy, str(paths.stage_adapter("sft")), is_trainable=True), None
    rollouts = paths.rollouts if rank == 0 else paths.root / f"rollouts.rank{rank}.jsonl"
    bridge = RewardBridge(executor.grader_set, executor, rows=[e.row for e in examples], rollouts_path=rollouts)
    callbacks: list[Any] = [TrainableCheck("rft")]
    watch: RFTWatch | None = None
    if rank == 0:  # one writer for the shared run directory
        eval_rows = config["eval_rows"]
        max_new = cfg.eval.max_new_tokens or cfg.rft.max_completion_length

        def held_out(model: Any) -> dict[str, Any]:
            return evaluate(
                model, tokenizer, eval_rows, executor.grader_set, executor, cfg.eval,
                max_new_tokens=max_new, seed=cfg.seed, progress=False, desc="eval rft (in-run)",
                environment=environment,
            )  # fmt: skip

        ckpt = Path(config["ckpt"]) if config["ckpt"] else None
        watch = RFTWatch.build(
            cfg, paths, executor.grader_set, ckpt=ckpt, start=config["start"],
            evaluate=held_out if eval_rows else None, tokenizer=tokenizer, say=print,
        )  # fmt: skip
        # the watch before CheckpointMarker: the guard state is in place before the marker
        callbacks += [*watch.callbacks, CheckpointMarker(), MetricsWriter(paths.metrics, "rft", echo=print)]
    callbacks += [*config["callbacks"], SyncStop()]
    trl_args = {
        **cfg.rft_trl_args(paths.checkpoints("rft")),
        "disable_tqdm": not (config["progress"] and rank == 0),
        "ddp_find_unused_parameters": False,
    }
    one = world == 1  # dynamic sampling and the curriculum need every group of a batch here
    trainer = build_grpo_trainer(
        policy, tokenizer, examples, bridge, trl_args=trl_args, lora=lora, callbacks=callbacks,
        environment=environment, dynamic_sampling=cfg.rft.dynamic_sampling if one else None,
        curriculum=cfg.rft.curriculum if one else None, pass_threshold=cfg.eval.pass_threshold,
    )  # fmt: skip
    quiet_console(trainer, progress=config["progress"] and rank == 0)
    trainer.add_callback(RayTrainReportCallback())
    trainer = prepare_trainer(trainer)
    trainer.train(resume_from_checkpoint=config["ckpt"])
    if rank == 0:
        model: Any = trainer.model  # the PeftModel the trainer wraps (transformers types it loosely)
        model.save_pretrained(str(paths.stage_adapter("rft")), selected_adapters=["default"])
        tokenizer.save_pretrained(str(paths.stage_adapter("rft")))
        done = watch.done_record(int(trainer.state.global_step)) if watch is not None else {}
        done.update({"global_step": trainer.state.global_step, "learners": world})
        paths.done("rft").write_text(json.dumps(done))
