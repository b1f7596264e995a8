"""Runs on a Ray cluster through the Ray Jobs API: submit, follow, and the client.

``rft submit`` validates the config exactly as ``rft train`` does, stages it with every
local file it names (:mod:`rft.cluster.staging`) and sends it::

    rft submit configs/tiny.yaml --address http://HEAD:8265 --wait
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rft.cluster.learners import TRAIN_WORKER_ENV
from rft.cluster.staging import stage_run
from rft.scoring.ray import ClusterError

logger = logging.getLogger(__name__)

__all__ = [
    "TERMINAL_JOB_STATES",
    "build_runtime_env",
    "enable_token_auth_if_available",
    "job_client",
    "submit_run",
    "train_entrypoint",
    "wait_for_job",
]

#: Ray Jobs states after which a job does not change any more.
TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


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
        from ray._raylet import Config  # type: ignore[attr-defined]  # compiled module, no stub for it

        Config.initialize("")
    except (ImportError, AttributeError) as err:  # older Ray without token auth: nothing to refresh
        logger.debug("ray: no token-auth config to refresh (%s)", err)
    logger.info(
        "ray: token auth on (token from %s)", "RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else token_path
    )
    return True


def job_client(address: str | None = None) -> Any:
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

    The config is loaded and validated first by :func:`rft.config.load_config`, the function
    ``rft train`` runs, so a bad config fails here, before anything is sent. Then the config
    and every local file it names are staged (:func:`rft.cluster.staging.stage_run`) and sent.

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

    Raises:
        ConfigError: the config is invalid, or names a missing file, or too much to send.
        ClusterError: the Jobs API cannot be reached.
    """
    from rft.config import load_config

    cfg = load_config(config, output_dir=output_dir)  # what `rft train` runs first: same checks, same errors
    stage = Path(tempfile.mkdtemp(prefix="rft-submit-"))
    try:
        staged = stage_run(cfg, stage, plugin_files=plugin_files)  # a missing input fails here, before any call
        client = job_client(address)
        plugin_args = [arg for rel in staged.plugins for arg in ("--plugin", rel)]
        if output_dir and not os.path.isabs(output_dir):
            logger.warning(
                "output_dir %r is relative: it lands in the job's temporary working directory on the cluster",
                output_dir,
            )
        cmd = entrypoint or train_entrypoint(
            staged.config, output_dir=output_dir, extra_args=[*plugin_args, *extra_args]
        )
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
        job_id: str = client.submit_job(**kwargs)
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
