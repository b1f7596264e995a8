"""``rft version``, ``rft graders``, ``rft plugins`` and ``rft grade``: graders without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rft.cli.app import PluginOpt, app, console, fail


@app.command()
def version() -> None:
    """Print the rftkit version."""
    from rft.core.version import __version__

    typer.echo(__version__)


@app.command()
def graders(
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every registered grader with its plugin, inputs and one-line doc."""
    from rft.core.errors import RFTError
    from rft.plugins import get_plugin_manager, get_registry

    try:
        registry = get_registry(get_plugin_manager(plugin or []))
    except RFTError as err:
        fail(str(err))
    rows = [r.to_dict() for r in registry]
    # functions of plugin modules without a hook (e.g. --plugin trl.rewards), usable by name
    rows += [{**r.to_dict(), "kind": "module function"} for r in registry.module_entries()]
    extra = _grader_notes()
    for r in rows:
        if r["name"] in extra:
            r["notes"] = extra[r["name"]]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} graders")
    for col in ("name", "plugin", "inputs", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        desc = r["description"] + (f" [{r['notes']}]" if r.get("notes") else "")
        table.add_row(r["name"], r["plugin"], ", ".join(r["inputs"]), desc)
    console().print(table)


def _grader_notes() -> dict[str, str]:
    """Extra facts shown next to some graders (e.g. the sandbox's isolation level)."""
    import rft.sandbox as sandbox

    level = sandbox.isolation_level()
    return {name: f"sandbox: {level}" for name in ("code_exec", "python")}


@app.command()
def plugins(
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List plugins (built-in, installed, and given with --plugin) with version and hooks."""
    from rft.core.errors import RFTError
    from rft.plugins import get_plugin_manager, list_plugins

    try:
        rows = list_plugins(get_plugin_manager(plugin or []))
    except RFTError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} plugins")
    for col in ("name", "package", "version", "hooks"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["package"], str(r["version"] or "-"), ", ".join(r["hooks"]))
    console().print(table)


@app.command()
def grade(
    data: Annotated[Path, typer.Option("--data", help="Dataset rows (JSONL, CSV, Parquet or a saved HF dataset).")],
    graders_file: Annotated[
        Path | None, typer.Option("--graders", help="Grader-set file (YAML or JSON); default: --config's graders.")
    ] = None,
    completions: Annotated[
        Path | None,
        typer.Option(
            "--completions",
            help="JSONL of completions, one per line ({'completion': …} or a string), aligned with --data; or rows with 'row' (index) and 'completion' for several per row. Without --completions and --field, each row's own `messages` (a saved conversation or tool-use trajectory) are graded.",
        ),
    ] = None,
    field: Annotated[
        str | None, typer.Option("--field", help="Column of --data holding the completion to grade.")
    ] = None,
    plugin: PluginOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write per-sample results (JSONL).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local or ray.")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Worker processes / Ray actors.")] = 2,
    address: Annotated[str | None, typer.Option("--address", help="Ray address for --executor ray.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Run config: its graders (unless --graders), its model's tokenizer, its data fields."
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer", help="Tokenizer (directory or hub name) giving TRL functions their completion_ids."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model (as a run config names it) whose tokenizer gives completion_ids."),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help="Column of --data naming each row's prompt (e.g. prompt_id): group graders get the completions "
            "of one value together. Default: completions of identical prompts form a group.",
        ),
    ] = None,
) -> None:
    """Score saved completions with a grader set, without training.

    The completions come from --completions, a --field of the data, or (with neither) the
    data rows' own `messages`: saved conversations and tool-use trajectories in OpenAI's chat
    format, graded from the first assistant message on (their `state` and `episode` keys
    reach graders). Prints a summary per grader and writes per-sample results with reasons. Exits
    with 1 when any grader errored, showing the first failing sample. TRL reward
    functions that ask for completion_ids need a tokenizer: --tokenizer, --model or
    --config (the run's model).
    """
    from rft.cli.grade_cmd import run_grade

    code = run_grade(
        data=data,
        graders_file=graders_file,
        completions=completions,
        field=field,
        plugins=plugin or [],
        out=out,
        executor=executor,
        workers=workers,
        address=address,
        config=config,
        tokenizer=tokenizer,
        model=model,
        group_by=group_by,
    )
    raise typer.Exit(code)
