"""``rft submit`` and ``rft jobs``: runs on a Ray cluster through the Ray Jobs API.

Registered by one import line in :mod:`rft.cli.main`; Ray loads only inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rft.cli.app import app, console, fail

jobs_app = typer.Typer(
    name="jobs",
    help="List, inspect, follow and stop runs on a Ray cluster (the Ray Jobs API).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray dashboard address, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS or RAY_ADDRESS).",
    ),
]


@app.command()
def submit(
    config: Annotated[
        Path,
        typer.Argument(
            help="Run config (YAML), validated as `rft train` does; every local file it names travels with the job."
        ),
    ],
    address: AddressOpt = None,
    plugin: Annotated[
        list[str] | None, typer.Option("--plugin", "-p", help="Plugin file (*.py) to send with the job; repeatable.")
    ] = None,
    pip: Annotated[
        list[str] | None,
        typer.Option("--pip", help="Plugin package the cluster installs for the job (pip spec); repeatable."),
    ] = None,
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", help="Run directory on the cluster: storage every node reaches (absolute path)."),
    ] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Submission id (default: Ray makes one).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job's logs until it ends; exit 1 unless it succeeds.")
    ] = False,
    train_arg: Annotated[
        list[str] | None, typer.Option("--train-arg", help="Extra argument for `rft train` on the cluster; repeatable.")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            help="Run this shell command in the staged directory instead of `rft train CONFIG` (e.g. an `rft grade …` run).",
        ),
    ] = None,
) -> None:
    """Submit `rft train CONFIG` to a Ray cluster (Ray Jobs API) and print the job id.

    The config is validated exactly as `rft train` validates it, before anything is sent; every
    local file it names (data, grader files, plugins, a small local model) travels with the job,
    wherever it lies; absolute paths are left as they are (storage every node reads).
    """
    from rft.cluster.jobs import job_client, submit_run
    from rft.core.errors import RFTError

    try:
        jid = submit_run(
            config,
            address=address,
            plugin_files=plugin or [],
            pip=pip or [],
            output_dir=output_dir,
            extra_args=train_arg or [],
            entrypoint=command,
            submission_id=job_id,
        )
    except RFTError as err:
        fail(str(err))
    typer.echo(jid)
    if wait:
        raise typer.Exit(_follow(job_client(address), jid))


def _follow(client: Any, job_id: str) -> int:
    """Stream a job's logs until it ends; 0 when it SUCCEEDED, else 1."""
    import asyncio

    from rft.cluster.jobs import wait_for_job

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            typer.echo(chunk, nl=False)

    asyncio.run(tail())
    state = wait_for_job(client, job_id)
    console().print(f"job {job_id}: {state}", highlight=False)
    return 0 if state == "SUCCEEDED" else 1


def _client(address: str | None):
    from rft.cluster.jobs import job_client
    from rft.core.errors import RFTError

    try:
        return job_client(address)
    except RFTError as err:
        fail(str(err))


def _state(status: Any) -> str:
    return str(getattr(status, "value", status))


@jobs_app.command("list")
def jobs_list(
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every job with its state as Ray reports it (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    jobs = _client(address).list_jobs()
    rows = [
        {
            "job_id": j.submission_id or j.job_id,
            "status": _state(j.status),
            "entrypoint": j.entrypoint,
            "start_time": j.start_time,
            "end_time": j.end_time,
            "message": j.message,
        }
        for j in sorted(jobs, key=lambda j: j.start_time or 0)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} jobs")
    for col in ("job_id", "status", "entrypoint"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["job_id"]), r["status"], r["entrypoint"])
    console().print(table)


@jobs_app.command("status")
def jobs_status(
    job_id: Annotated[str, typer.Argument(help="Submission id.")],
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A job's state and Ray's message about it."""
    client = _client(address)
    try:
        info = client.get_job_info(job_id)
    except RuntimeError as err:
        fail(f"no job {job_id!r} at this cluster: {err}")
    row = {"job_id": job_id, "status": _state(info.status), "message": info.message, "entrypoint": info.entrypoint}
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    typer.echo(f"{job_id}: {row['status']}" + (f" ({row['message']})" if row["message"] else ""))


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="Submission id.")],
    address: AddressOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")] = False,
) -> None:
    """A job's driver logs (stdout and stderr of `rft train` on the cluster)."""
    client = _client(address)
    if follow:
        raise typer.Exit(_follow(client, job_id))
    try:
        typer.echo(client.get_job_logs(job_id), nl=False)
    except RuntimeError as err:
        fail(f"no logs for job {job_id!r}: {err}")


@jobs_app.command("stop")
def jobs_stop(
    job_id: Annotated[str, typer.Argument(help="Submission id.")],
    address: AddressOpt = None,
) -> None:
    """Ask Ray to stop a job (its state becomes STOPPED)."""
    client = _client(address)
    try:
        stopped = client.stop_job(job_id)
    except RuntimeError as err:
        fail(f"cannot stop job {job_id!r}: {err}")
    typer.echo(f"{job_id}: {'stop requested' if stopped else 'already finished'}")
