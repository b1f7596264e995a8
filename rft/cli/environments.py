"""``rft environments``: the environments agentic RFT can use, with their tools."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rft.cli.app import PluginOpt, app, console, fail


@app.command()
def environments(
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the registered environments (agentic RFT) with their tools and the schema the model sees."""
    from rft.core.errors import RFTError
    from rft.plugins import get_environments, get_plugin_manager

    try:
        registry = get_environments(get_plugin_manager(plugin or []))
        rows = [
            {**r.env.describe(), "plugin": r.plugin, "schemas": [t.schema() for t in r.env.tools]} for r in registry
        ]
    except RFTError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} environments")
    for col in ("name", "plugin", "tools", "max_turns", "success signal", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        tools = ", ".join(
            f"{s['function']['name']}({', '.join(s['function']['parameters'].get('properties', {}))})"
            for s in r["schemas"]
        )
        table.add_row(
            r["name"], r["plugin"], tools, str(r["max_turns"]), "yes" if r["success_signal"] else "no", r["description"]
        )
    console().print(table)
