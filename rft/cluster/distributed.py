"""Runs on a Ray cluster: connection, resource pre-checks, Ray Jobs submission, Ray Train learners.

This is the one module that knows Ray for *training* (``rft.scoring.ray`` is the one
that knows it for scoring). Ray is imported inside functions, so ``import rft`` stays light.

Where a run goes, in order (Ray's own convention, see ``ray.util.multiprocessing.Pool``):

1. an explicit address (``rft train --address``, ``scoring.address``),
2. the ``RAY_ADDRESS`` environment variable (set by ``ray job submit`` / ``rft submit``),
3. an embedded local Ray started in this process.

:func:`check_resources` runs before any work is scheduled: a cluster that cannot
host the learners and the grader pool fails within seconds with a message naming
the missing resource, never a silent hang.

Submission (``rft submit``) stages the config, the local files it references and the
plugin files into a small working directory and sends it with Ray's Jobs API::

    rft submit configs/tiny.yaml --address http://HEAD:8265 --wait
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import ConfigError, RFTError

logger = logging.getLogger(__name__)

__all__ = [
    "ClusterError",
    "ResourceUnavailableError",
    "ResourceRequest",
    "resolve_address",
    "connect",
    "bundle_for",
    "check_resources",
    "enable_token_auth_if_available",
    "job_client",
    "stage_working_dir",
    "build_runtime_env",
    "train_entrypoint",
    "submit_run",
    "wait_for_job",
    "TERMINAL_JOB_STATES",
]

#: Ray Jobs states after which a job does not change any more.
TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})

#: Environment set for every Ray Train worker (DESIGN.md §4: the print patch floods logs with bytecode).
TRAIN_WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "TOKENIZERS_PARALLELISM": "false"}

#: Staged working directories larger than this are refused (Ray's own upload limit is 500 MiB).
MAX_STAGED_BYTES = 100 * 1024 * 1024


class ClusterError(RFTError):
    """The Ray cluster cannot be reached or cannot run what was asked."""


class ResourceUnavailableError(ClusterError):
    """The cluster lacks resources for the learners or the grader pool.

    Attributes:
        missing: resource name → how much more is needed than the cluster has (or frees in time).
    """

    def __init__(self, message: str, *, missing: Mapping[str, float] | None = None):
        self.missing = dict(missing or {})
        super().__init__(message)

    def __reduce__(self):  # keep ``missing`` across Ray
        return (_rebuild_resource_error, (self.args[0], self.missing))


def _rebuild_resource_error(message: str, missing: dict[str, float]) -> ResourceUnavailableError:
    return ResourceUnavailableError(message, missing=missing)


# --------------------------------------------------------------------------- connection


def resolve_address(address: str | None = None) -> tuple[str | None, str]:
    """Where to connect, and why: explicit address, then ``RAY_ADDRESS``, then local.

    Returns:
        ``(address, source)`` with source ``"explicit"``, ``"RAY_ADDRESS"`` or ``"local"``
        (address None: start an embedded local Ray).

    >>> import os; os.environ.pop("RAY_ADDRESS", None) and None
    >>> resolve_address("ray://head:10001")
    ('ray://head:10001', 'explicit')
    >>> resolve_address(None)
    (None, 'local')
    """
    if address:
        return address, "explicit"
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env, "RAY_ADDRESS"
    return None, "local"


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    dashboard: bool = False,
) -> str:
    """Connect this process to Ray (explicit address → ``RAY_ADDRESS`` → embedded local).

    Does nothing when Ray is already initialized here. Logs which way it went.

    Args:
        address: a Ray address (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None tries
            ``RAY_ADDRESS`` and then starts a local Ray.
        num_cpus: CPUs of an embedded local Ray (ignored when connecting to a cluster).
        runtime_env: job-level runtime environment (e.g. ``env_vars``, ``py_modules``).
        namespace: Ray namespace (named actors are looked up in it).
        dashboard: start the dashboard with an embedded local Ray (Ray Train's state
            tracking needs it; Ray picks a free port when 8265 is taken).

    Returns:
        ``"existing"``, ``"explicit"``, ``"RAY_ADDRESS"`` or ``"local"``.

    Raises:
        ClusterError: the address cannot be reached; the message names it.
    """
    import ray

    if ray.is_initialized():
        logger.info("ray: already initialized in this process; using that connection")
        return "existing"
    target, source = resolve_address(address)
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    if namespace:
        kwargs["namespace"] = namespace
    t0 = time.perf_counter()
    try:
        if target is None:
            # "local" starts a new Ray even when `ray start` left one running on this machine
            kwargs.update(num_cpus=num_cpus, include_dashboard=dashboard)
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=target, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        hint = (
            "start one with `ray start --head` or pass --address; an address from RAY_ADDRESS "
            "must be reachable from this machine"
        )
        raise ClusterError(f"cannot connect to Ray at {target!r} (from {source}): {err}; {hint}") from err
    where = "a new local Ray" if target is None else f"the Ray cluster at {target}"
    logger.info("ray: connected to %s (address from %s) in %.1f s", where, source, time.perf_counter() - t0)
    return source


# --------------------------------------------------------------------------- resources


@dataclass
class ResourceRequest:
    """A group of identical Ray workers a run needs (the learners, the grader pool).

    Attributes:
        name: what they are, for messages (``"learner"``, ``"grader actor"``).
        count: how many.
        resources: Ray resources of one, in ``ray.cluster_resources()`` spelling
            (``{"CPU": 1, "GPU": 1, "grader": 1}``).
    """

    name: str
    count: int
    resources: dict[str, float] = field(default_factory=dict)

    def total(self) -> dict[str, float]:
        """Resources of all ``count`` workers together.

        >>> ResourceRequest("learner", 2, {"CPU": 1, "GPU": 0.5}).total()
        {'CPU': 2.0, 'GPU': 1.0}
        """
        return {k: float(v) * self.count for k, v in self.resources.items() if v}


@dataclass
class GraderPoolSettings:
    """The shared grader pool (``scaling.graders``)."""

    num_actors: int = 2
    num_cpus: float = 1.0
    resources: dict[str, float] = field(default_factory=dict)
    max_concurrency: int = 16

    def actor_resources(self) -> dict[str, Any]:
        """Ray actor options for :class:`rft.scoring.ScoringOptions.actor_resources`.

        >>> GraderPoolSettings(num_cpus=0.5, resources={"grader_node": 1}).actor_resources()
        {'num_cpus': 0.5, 'resources': {'grader_node': 1}}
        """
        out: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.resources:
            out["resources"] = dict(self.resources)
        return out


@dataclass
class ScalingSettings:
    """The ``scaling:`` section of a run config (see ``rft/config/run.schema.json``)."""

    num_learners: int = 1
    use_gpu: bool = False
    resources_per_learner: dict[str, float] = field(default_factory=lambda: {"CPU": 1})
    graders: GraderPoolSettings = field(default_factory=GraderPoolSettings)
    storage_path: str | None = None
    resource_timeout_s: float = 30.0
    autoscaling: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScalingSettings:
        """Build from a schema-validated mapping.

        >>> ScalingSettings.from_dict({"num_learners": 2, "graders": {"num_actors": 4}}).graders.num_actors
        4
        """
        raw = dict(raw)
        graders = GraderPoolSettings(**dict(raw.pop("graders", None) or {}))
        return cls(**raw, graders=graders)

    def learner_resources(self) -> dict[str, float]:
        """One learner's Ray resources (``GPU: 1`` added when ``use_gpu`` and none is named).

        >>> ScalingSettings(use_gpu=True).learner_resources()
        {'CPU': 1.0, 'GPU': 1.0}
        """
        res = {k: float(v) for k, v in self.resources_per_learner.items()}
        if self.use_gpu and not res.get("GPU"):
            res["GPU"] = 1.0
        return res

    def requests(self) -> list[ResourceRequest]:
        """What the pre-check asks of the cluster: the learners and the grader pool."""
        g = self.graders
        return [
            ResourceRequest("learner", self.num_learners, self.learner_resources()),
            ResourceRequest("grader actor", g.num_actors, bundle_for(num_cpus=g.num_cpus, resources=g.resources)),
        ]

    def apply_to_scoring(self, scoring: Any, *, address: str | None = None) -> None:
        """Point ``scoring`` (:class:`rft.scoring.ScoringOptions`) at the shared Ray grader pool."""
        scoring.executor = "ray"
        scoring.num_workers = self.graders.num_actors
        scoring.actor_resources = self.graders.actor_resources()
        scoring.max_concurrency = self.graders.max_concurrency
        if address:
            scoring.address = address


def bundle_for(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: float | None = None,
    resources: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Ray's ``num_cpus``/``num_gpus``/``resources`` options as one resource bundle.

    >>> bundle_for(num_cpus=1, resources={"grader": 1})
    {'CPU': 1.0, 'grader': 1.0}
    """
    bundle: dict[str, float] = {}
    if num_cpus:
        bundle["CPU"] = float(num_cpus)
    if num_gpus:
        bundle["GPU"] = float(num_gpus)
    if memory:
        bundle["memory"] = float(memory)
    for key, value in (resources or {}).items():
        if value:
            bundle[key] = float(value)
    return bundle


def _shortfall(requests: Sequence[ResourceRequest], have: Mapping[str, float]) -> dict[str, float]:
    need: dict[str, float] = {}
    for req in requests:
        for key, value in req.total().items():
            need[key] = need.get(key, 0.0) + value
    return {k: v - float(have.get(k, 0.0)) for k, v in need.items() if v > float(have.get(k, 0.0)) + 1e-9}


def _describe(requests: Sequence[ResourceRequest]) -> str:
    return "; ".join(f"{r.count} {r.name}(s) × {r.resources or '{}'}" for r in requests)


def _fmt(res: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(res.items())) or "nothing"


def _relevant(res: Mapping[str, float], requests: Sequence[ResourceRequest]) -> dict[str, float]:
    """The resources worth showing: CPU, GPU and whatever the requests name (not node:…/memory)."""
    keys = {"CPU", "GPU"} | {k for r in requests for k in r.resources}
    return {k: v for k, v in res.items() if k in keys}


def check_resources(
    requests: Sequence[ResourceRequest],
    *,
    timeout_s: float = 30.0,
    autoscaling: bool = False,
    strategy: str = "SPREAD",
) -> None:
    """Fail fast, naming what is missing, when the cluster cannot host ``requests``.

    Two checks, both bounded:

    1. the cluster's total resources (``ray.cluster_resources()``) against the sum of
       the requests: a shortfall fails at once, unless ``autoscaling`` (the cluster adds
       nodes on demand), in which case it only logs and the second check decides;
    2. a placement group holding one bundle per worker must become ready within
       ``timeout_s`` (resources can exist yet be busy, or be split across nodes so one
       worker does not fit anywhere); it is removed again right after.

    Connect first (:func:`connect`).

    Raises:
        ResourceUnavailableError: naming each missing resource, how much was asked,
            what the cluster has and what is free now.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    requests = [r for r in requests if r.count > 0]
    if not requests:
        return
    total = ray.cluster_resources()
    missing = _shortfall(requests, total)
    if missing:
        msg = (
            f"the Ray cluster lacks {_fmt(missing)} for {_describe(requests)} "
            f"(cluster total: {_fmt(_relevant(total, requests))}). Add nodes that provide "
            f"{', '.join(sorted(missing))} (e.g. `ray start --resources='{{\"{sorted(missing)[0]}\": 4}}'`), "
            "or lower `scaling:` (learners, resources per learner, grader pool size or placement)"
        )
        if not autoscaling:
            raise ResourceUnavailableError(msg, missing=missing)
        logger.warning("%s; waiting up to %.0f s for the autoscaler", msg, timeout_s)
    bundles = [dict(r.resources) for r in requests for _ in range(r.count) if any(r.resources.values())]
    bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    if not bundles:
        return
    pg = placement_group(bundles, strategy=strategy, name=f"rft-precheck-{os.getpid()}-{time.time_ns()}")
    t0 = time.perf_counter()
    try:
        ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    finally:
        remove_placement_group(pg)
    if ready:
        logger.info(
            "ray: resources for %s are available (checked in %.1f s)", _describe(requests), time.perf_counter() - t0
        )
        return
    available = ray.available_resources()
    busy = _shortfall(requests, available)
    largest = {k: max((b.get(k, 0.0) for b in bundles), default=0.0) for k in {k for b in bundles for k in b}}
    raise ResourceUnavailableError(
        f"the Ray cluster could not place {_describe(requests)} within {timeout_s:g} s "
        f"(free now: {_fmt(_relevant(available, requests))}; total: {_fmt(_relevant(total, requests))}; short of: {_fmt(busy) if busy else 'nothing in total'}). "
        f"Either other work holds them, or no single node fits one worker's largest ask ({_fmt(largest)}); "
        "free the cluster, add nodes, or lower `scaling:`",
        missing=busy or missing,
    )


# --------------------------------------------------------------------------- jobs


def enable_token_auth_if_available() -> bool:
    """Turn on Ray token auth for this process when a token exists and no mode is set.

    A cluster started after ``~/.ray/auth_token`` exists requires the token (HTTP 401
    otherwise); Ray's own CLI does the same check. An explicit ``RAY_AUTH_MODE`` wins.

    Returns:
        whether token auth is on.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or Path(token_path).is_file()):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config per process; refresh it so this process sees token mode
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError) as err:  # older Ray without token auth: nothing to refresh
        logger.debug("ray: no token-auth config to refresh (%s)", err)
    logger.info(
        "ray: token auth on (token from %s)", "RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else token_path
    )
    return True


def job_client(address: str | None = None):
    """A ``ray.job_submission.JobSubmissionClient`` for the dashboard at ``address``.

    Args:
        address: ``http://HEAD:8265``; None uses ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``
            like ``ray job``.

    Raises:
        ClusterError: no address, or the dashboard cannot be reached / refuses the token.
    """
    if not address and not (os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")):
        raise ClusterError("no Ray dashboard address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    enable_token_auth_if_available()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(
            f"cannot reach the Ray Jobs API at {address or os.environ.get('RAY_API_SERVER_ADDRESS') or os.environ.get('RAY_ADDRESS')}: "
            f"{err}. Check the address (the dashboard port, default 8265, `ray start --head --dashboard-host=0.0.0.0`) "
            "and, for a cluster with token auth, RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
        ) from err


def _iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _iter_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _iter_strings(v)


def _local_refs(doc: Any, base: Path) -> list[Path]:
    """Relative paths named anywhere in a parsed config that exist under ``base``."""
    found: list[Path] = []
    base = base.resolve()
    for s in _iter_strings(doc):
        if not s or "\n" in s or len(s) > 512 or os.path.isabs(s) or "://" in s:
            continue
        ref = s.split(":", 1)[1] if s.startswith("tiny:") else s
        try:
            p = (base / ref).resolve()
        except (OSError, ValueError):
            continue
        if p != base and p.exists() and p.is_relative_to(base):
            found.append(p)
    return found


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage_working_dir(
    config: str | Path,
    dest: str | Path,
    *,
    plugin_files: Iterable[str | Path] = (),
    max_bytes: int = MAX_STAGED_BYTES,
) -> Path:
    """Copy a run config, the local files it names and plugin files into ``dest``.

    Layout relative to the config's directory is kept, so relative paths in the config
    (data, grader files, plugins) work unchanged in the job's working directory. YAML/JSON
    files found this way (grader-set files) are scanned too, one level deep.

    Returns:
        the staged config's path inside ``dest``.

    Raises:
        ConfigError: a file is missing, or the staged files exceed ``max_bytes``
            (put large data and models on storage every node reads, and name them by absolute path).
    """
    import yaml

    config = Path(config).resolve()
    if not config.is_file():
        raise ConfigError(f"config file not found: {config}")
    base = config.parent
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        doc = yaml.safe_load(config.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", file=str(config)) from err
    todo = [config, *_local_refs(doc, base)]
    for ref in list(todo[1:]):
        if ref.is_file() and ref.suffix in {".yaml", ".yml", ".json"}:
            try:
                sub = yaml.safe_load(ref.read_text())
            except yaml.YAMLError:
                continue  # not a config; it is staged as a plain file
            todo += [p for p in _local_refs(sub, ref.parent) if p.is_relative_to(base)]
    extra: list[tuple[Path, str]] = []
    for pf in plugin_files:
        p = Path(pf).resolve()
        if not p.exists():
            raise ConfigError(f"plugin file not found: {pf}", key="--plugin")
        if p in todo:
            continue
        extra.append((p, str(p.relative_to(base)) if p.is_relative_to(base) else p.name))
    total = 0
    for src, rel in [(p, str(p.relative_to(base))) for p in dict.fromkeys(todo)] + extra:
        total += _size(src)
        if total > max_bytes:
            raise ConfigError(
                f"the files to send with the job exceed {max_bytes // 2**20} MiB at {src}; put large data and "
                "models on storage every node reads and name them by absolute path in the config",
                file=str(config),
            )
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(
                src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git")
            )
        else:
            shutil.copy2(src, target)
    logger.info("staged %d file(s), %.1f KiB, for the job in %s", len(todo) + len(extra), total / 1024, dest)
    return dest / config.name


def build_runtime_env(
    working_dir: str | Path,
    *,
    pip: Sequence[str] = (),
    env_vars: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The job's runtime_env: the staged directory, plugin packages to pip-install, env vars.

    >>> build_runtime_env("/tmp/x", pip=["rft-graders-extra"])["pip"]
    ['rft-graders-extra']
    """
    env: dict[str, Any] = {"working_dir": str(working_dir), "env_vars": {**TRAIN_WORKER_ENV, **dict(env_vars or {})}}
    if pip:
        env["pip"] = list(pip)
    return env


def train_entrypoint(config_name: str, *, output_dir: str | None = None, extra_args: Sequence[str] = ()) -> str:
    """The shell command a submitted job runs (``rft train`` on the cluster).

    >>> train_entrypoint("run.yaml", output_dir="/shared/runs/a")
    'rft train run.yaml --output-dir /shared/runs/a'
    """
    parts = ["rft", "train", config_name]
    if output_dir:
        parts += ["--output-dir", output_dir]
    parts += list(extra_args)
    return shlex.join(parts)


def submit_run(
    config: str | Path,
    *,
    address: str | None = None,
    plugin_files: Sequence[str | Path] = (),
    pip: Sequence[str] = (),
    output_dir: str | None = None,
    extra_args: Sequence[str] = (),
    entrypoint: str | None = None,
    submission_id: str | None = None,
    env_vars: Mapping[str, str] | None = None,
    entrypoint_num_cpus: float | None = None,
) -> str:
    """Submit ``rft train CONFIG`` to a cluster through the Ray Jobs API.

    Args:
        config: the run config (its local files and ``plugin_files`` travel with it).
        address: the dashboard, ``http://HEAD:8265``.
        pip: plugin packages the cluster installs for the job.
        output_dir: run directory on the cluster; use storage every node can reach
            (a relative path lands in the job's temporary working directory).
        extra_args: more ``rft train`` arguments.
        entrypoint: replace the whole command (advanced; the staged config is in the cwd).

    Returns:
        the submission id.
    """
    client = job_client(address)
    stage = Path(tempfile.mkdtemp(prefix="rft-submit-"))
    try:
        staged = stage_working_dir(config, stage, plugin_files=plugin_files)
        rel = staged.relative_to(stage)
        plugin_args: list[str] = []
        for pf in plugin_files:
            p = Path(pf).resolve()
            base = Path(config).resolve().parent
            plugin_args += ["--plugin", str(p.relative_to(base)) if p.is_relative_to(base) else p.name]
        if output_dir and not os.path.isabs(output_dir):
            logger.warning(
                "output_dir %r is relative: it lands in the job's temporary working directory on the cluster",
                output_dir,
            )
        cmd = entrypoint or train_entrypoint(str(rel), output_dir=output_dir, extra_args=[*plugin_args, *extra_args])
        runtime_env = build_runtime_env(stage, pip=pip, env_vars=env_vars)
        kwargs: dict[str, Any] = {
            "entrypoint": cmd,
            "runtime_env": runtime_env,
            "metadata": {"rft_config": Path(config).name},
        }
        if submission_id:
            kwargs["submission_id"] = submission_id
        if entrypoint_num_cpus is not None:
            kwargs["entrypoint_num_cpus"] = entrypoint_num_cpus
        job_id = client.submit_job(**kwargs)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # the client has uploaded the package by now
    logger.info("submitted job %s: %s", job_id, cmd)
    return job_id


def wait_for_job(client: Any, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> str:
    """Poll a job until it reaches a terminal state; return that state's name.

    Raises:
        ClusterError: ``timeout_s`` passed first (the job keeps running).
    """
    t0 = time.monotonic()
    while True:
        status = str(client.get_job_status(job_id))
        status = status.split(".")[-1]
        if status in TERMINAL_JOB_STATES:
            return status
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise ClusterError(
                f"job {job_id} still {status} after {timeout_s:g} s; it keeps running (`rft jobs stop {job_id}`)"
            )
        time.sleep(poll_s)


# --------------------------------------------------------------------------- training on a cluster


def run_distributed(
    cfg: Any,
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
        cfg: a :class:`rft.config.run.RunConfig`; a config without ``scaling:`` gets the defaults
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
    scaling.apply_to_scoring(cfg.scoring, address=address)
    source = connect(address, dashboard=True)
    try:
        check_resources(scaling.requests(), timeout_s=scaling.resource_timeout_s, autoscaling=scaling.autoscaling)
        runner = LearnerRunner(scaling, progress=progress, extra_callbacks=list((extra_callbacks or {}).get("rft", ())))
        others = {k: v for k, v in (extra_callbacks or {}).items() if k != "rft"}
        return run_training(cfg, resume=resume, progress=progress, log=log, extra_callbacks=others, rft_runner=runner)
    finally:
        if source != "existing":  # leave the cluster as we found it: disconnect (a local Ray stops)
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
            f"rft: {s.num_learners} learner(s) ({'GPU' if s.use_gpu else 'CPU'}, {_fmt(s.learner_resources())} each) "
            f"under Ray Train, scoring through {len(executor.actors)} shared grader actors; storage {storage}"
        )
        loop_config = {
            "cfg": cfg,
            "root": str(Path(paths.root).resolve()),
            "model": plan.model,
            "examples": plan.splits.train,
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
            run_config=RunConfig(
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
    """One learner (a Ray Train worker): a TRL GRPOTrainer scoring through the shared pool."""
    import json

    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from rft.models.resolve import load_model
    from rft.train.callbacks import CheckpointMarker, MetricsWriter, TrainableCheck, quiet_console
    from rft.train.grpo import build_grpo_trainer
    from rft.train.pipeline import RunPaths
    from rft.train.rewards import RewardBridge

    for key, value in TRAIN_WORKER_ENV.items():
        os.environ.setdefault(key, value)
    rank = ray.train.get_context().get_world_rank()
    cfg = config["cfg"]
    paths = RunPaths(config["root"])
    examples = config["examples"]
    policy, tokenizer = load_model(config["model"], dtype=cfg.model.dtype)
    lora = cfg.lora
    if cfg.sft is not None:  # continue the SFT adapter (trainable), as the in-process pipeline does
        from peft import PeftModel

        policy, lora = PeftModel.from_pretrained(policy, str(paths.stage_adapter("sft")), is_trainable=True), None
    rollouts = paths.rollouts if rank == 0 else paths.root / f"rollouts.rank{rank}.jsonl"
    executor = config["executor"]
    bridge = RewardBridge(executor.grader_set, executor, rows=[e.row for e in examples], rollouts_path=rollouts)
    callbacks: list[Any] = [TrainableCheck("rft")]
    if rank == 0:  # one writer for the shared run directory
        callbacks += [CheckpointMarker(), MetricsWriter(paths.metrics, "rft", echo=print)]
    callbacks += config["callbacks"]
    trl_args = {
        **cfg.rft_trl_args(paths.checkpoints("rft")),
        "disable_tqdm": not (config["progress"] and rank == 0),
        "ddp_find_unused_parameters": False,
    }
    trainer = build_grpo_trainer(policy, tokenizer, examples, bridge, trl_args=trl_args, lora=lora, callbacks=callbacks)
    quiet_console(trainer, progress=config["progress"] and rank == 0)
    trainer.add_callback(RayTrainReportCallback())
    trainer = prepare_trainer(trainer)
    trainer.train(resume_from_checkpoint=config["ckpt"])
    if rank == 0:
        trainer.model.save_pretrained(str(paths.stage_adapter("rft")), selected_adapters=["default"])
        tokenizer.save_pretrained(str(paths.stage_adapter("rft")))
        paths.done("rft").write_text(
            json.dumps({"global_step": trainer.state.global_step, "learners": ray.train.get_context().get_world_size()})
        )
