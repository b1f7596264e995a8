"""``rft train`` and ``rft export``: the training pipeline's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rft.cli.app import app, console, fail


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); see configs/tiny.yaml.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate config, data, graders and model; print the plan; do not train.")
    ] = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory from its last complete checkpoint.")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Run directory (overrides output_dir in the config).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Train on this Ray cluster (auto, HOST:6379, ray://HOST:10001) with the config's `scaling:`; a config with `scaling:` and no address uses RAY_ADDRESS, else an embedded local Ray.",
        ),
    ] = None,
) -> None:
    """Train: SFT warm start then GRPO with the config's graders, with evaluation before and after.

    Writes the run directory: config.resolved.yaml, metrics.jsonl, rollouts.jsonl, eval.json,
    checkpoints, the final LoRA adapter (adapter/) and report.md with plots.
    """
    from rft.config import load_config
    from rft.core.errors import RFTError

    if resume is not None and output_dir is not None and Path(resume) != Path(output_dir):
        fail("--resume RUN already names the run directory; drop --output-dir")
    run_dir: Path | None = resume or output_dir
    try:
        cfg = load_config(config, output_dir=run_dir)
        run_dir = cfg.output_dir
        if dry_run:
            from rft.train.pipeline import make_plan

            plan = make_plan(cfg)
            _print_plan(plan.to_dict(), as_json)
            return
        from rft.train.pipeline import run_training

        con = console()

        def say(m):
            return con.print(m, highlight=False, markup=False)

        if address or cfg.scaling is not None:
            from rft.cluster.learners import run_distributed

            results = run_distributed(
                cfg, address=address, resume=resume is not None, progress=not no_progress, log=say
            )
        else:
            results = run_training(cfg, resume=resume is not None, progress=not no_progress, log=say)
    except RFTError as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail(f"interrupted; continue with: rft train {config} --resume {run_dir or 'RUN_DIR'}", code=130)
    if results:
        _print_eval(results)


def _print_plan(plan: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(plan, indent=2, default=str))
        return
    from rich.tree import Tree

    tree = Tree(f"[bold]plan[/] for {plan['config']} → {plan['output_dir']}")
    m = plan["model"]
    tree.add(f"model: {m['name']} ({m['kind']}, {m['path']})")
    d = plan["data"]
    tree.add(
        f"data: {d['train_rows']} train rows ({d['train_rows_with_reference']} with a reference), "
        f"{d['eval_rows']} held-out; columns: {', '.join(d['columns'])}"
        + (f"; {d['skipped_rows']} skipped" if d["skipped_rows"] else "")
    )
    g = tree.add(
        f"graders ({plan['scoring']['executor']} executor"
        + (f", formula {plan['formula']}" if plan.get("formula") else "")
        + ")"
    )
    for e in plan["graders"]:
        g.add(f"{e['id']} ({e['grader']}) weight {e['weight']:g}, inputs {', '.join(e['inputs'])}")
    for stage, args in plan["stages"].items():
        tree.add(f"stage {stage}: " + ", ".join(f"{k}={v}" for k, v in args.items()))
    if plan.get("environment"):
        env = plan["environment"]
        tree.add(
            f"environment: {env['name']} (tools {', '.join(env['tools'])}; up to {env['max_turns']} rounds of tool "
            f"calls; success signal: {'yes' if env['success_signal'] else 'no'})"
        )
    tree.add(
        f"lora: r={plan['lora']['r']}, alpha={plan['lora']['alpha']}, target_modules={plan['lora']['target_modules']}"
    )
    tree.add(
        f"eval: {'on ' + str(plan['eval']['rows']) + ' rows before and after each stage' if plan['eval']['enabled'] else 'off'}"
    )
    for note in plan.get("notes", []):
        tree.add(f"[yellow]note:[/] {note}")
    console().print(tree)
    console().print("[green]config, data, graders and model are valid[/]")


def _print_eval(results: dict) -> None:
    from rich.table import Table

    phases = [p for p in ("base", "sft", "rft") if p in results]
    table = Table(title="held-out evaluation")
    table.add_column("")
    for p in phases:
        table.add_column(p, justify="right")

    def f(x: object) -> str:
        return "–" if x is None else f"{x:.3f}"

    table.add_row("mean reward", *(f(results[p]["mean_reward"]) for p in phases))
    table.add_row("pass rate", *(f(results[p]["pass_rate"]) for p in phases))
    graders = sorted({g for p in phases for g in results[p]["graders"]})
    for g in graders:
        table.add_row(g, *(f(results[p]["graders"].get(g, {}).get("mean")) for p in phases))
    console().print(table)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A finished run directory.")],
    merge: Annotated[
        Path, typer.Option("--merge", help="Write the base model with the adapter merged in to this directory.")
    ],
) -> None:
    """Export a run's model: the base with the final LoRA adapter merged, as a plain HF model."""
    from rft.core.errors import RFTError
    from rft.train.pipeline import export_merged

    try:
        out = export_merged(run, merge)
    except RFTError as err:
        fail(str(err))
    console().print(f"merged model written to {out}")
