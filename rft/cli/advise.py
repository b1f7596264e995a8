"""``rft advise``: SFT, RFT or SFT then RFT — with the numbers behind it and a config to start from.

Registered on :data:`rft.cli.main.app` by one import line in ``rft/cli/main.py``. The work is done
by :mod:`rft.advise` (stages run by :func:`rft.advise.advisor.advise`); this module only loads
inputs (through the row model, as ``rft train`` does), shows progress and prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rft.cli.app import PluginOpt, app, console, fail

if TYPE_CHECKING:
    from rft.advise.advisor import Advice
    from rft.advise.probe import ProbeOptions
    from rft.core import GraderSet
    from rft.data import Example

__all__ = ["advise", "render"]


@app.command()
def advise(
    data: Annotated[Path, typer.Argument(help="Training rows (JSONL, CSV, Parquet or a saved HF dataset).")],
    graders_file: Annotated[
        Path | None, typer.Option("--graders", help="Grader-set file (YAML or JSON) that would be the reward.")
    ] = None,
    plugin: PluginOpt = None,
    eval_file: Annotated[
        Path | None, typer.Option("--eval", help="Held-out rows (coverage and leakage are measured).")
    ] = None,
    probe_model: Annotated[
        str | None,
        typer.Option(
            "--probe-model",
            help="Sample this base model and grade it: a model directory, *.gguf, tiny[:DIR] or smollm2-135m-instruct.",
        ),
    ] = None,
    probe_rows: Annotated[int, typer.Option("--probe-rows", min=1, help="Prompts the probe samples.")] = 16,
    probe_samples: Annotated[
        int, typer.Option("--probe-samples", min=1, help="Completions per prompt (K of pass@K).")
    ] = 4,
    probe_max_tokens: Annotated[
        int | None,
        typer.Option("--probe-max-tokens", min=1, help="Tokens per completion (default: from the reference lengths)."),
    ] = None,
    probe_dtype: Annotated[
        str,
        typer.Option(
            "--probe-dtype",
            help="auto (as training: bf16 on a GPU that has it, else fp32), bfloat16 (≈2× faster generation on CPUs with bf16) or float32.",
        ),
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (rft/advise/advice.schema.json).")
    ] = False,
    write_config: Annotated[
        Path | None, typer.Option("--write-config", help="Write a starting run config for `rft train` here.")
    ] = None,
    config_model: Annotated[
        str | None,
        typer.Option(
            "--config-model", help="Model of the written config (default: --probe-model, else smollm2-135m-instruct)."
        ),
    ] = None,
) -> None:
    """Recommend SFT, RFT, SFT then RFT, RFT with a model judge, collecting labels, or nothing.

    Measures the data (references, labels, duplicates, reasoning indicators), checks the
    graders (do references score high, do degenerate outputs score low?) and, with
    --probe-model, samples the base model. Prints the decision path with every number used.
    """
    from rft.advise.advisor import advise as run_advisor
    from rft.advise.probe import ProbeOptions
    from rft.advise.writer import write_config as write_run_config
    from rft.core.errors import RFTError
    from rft.data import load_examples
    from rft.plugins import get_plugin_manager, grader_set_from_file

    plugins = list(plugin or [])
    try:
        rows = load_examples(data)
        eval_rows = load_examples(eval_file) if eval_file is not None else None
        grader_set = grader_set_from_file(graders_file, plugins=plugins) if graders_file is not None else None
        if probe_model is not None and grader_set is None:
            fail("--probe-model grades the base model's samples: pass --graders too")
        pm_plugins = (grader_set.spec or {}).get("plugins", plugins) if grader_set is not None else plugins
        pm = get_plugin_manager(pm_plugins)
        probe = None
        if probe_model is not None:
            probe = ProbeOptions(
                model=probe_model,
                rows=probe_rows,
                samples=probe_samples,
                max_new_tokens=probe_max_tokens,
                dtype=probe_dtype,
            )
        inputs: dict[str, Any] = {
            "data": str(data),
            "graders": str(graders_file) if graders_file else None,
            "plugins": plugins,
            "eval": str(eval_file) if eval_file else None,
            "probe_model": probe_model,
        }
        if probe is None:
            result = run_advisor(rows, grader_set=grader_set, eval_rows=eval_rows, pm=pm, inputs=inputs)
        else:
            result = _advise_with_progress(rows, grader_set, eval_rows, probe, pm, inputs)
    except RFTError as err:
        fail(str(err))
        return

    config_note: dict[str, Any] | None = None
    if write_config is not None:
        try:
            written = write_run_config(result, write_config, grader_set=grader_set, model=config_model)
            config_note = {"path": str(written), "error": None}
        except RFTError as err:
            config_note = {"path": None, "error": str(err)}

    if as_json:
        obj = result.to_dict()
        if config_note is not None:
            obj["config"] = config_note
        typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    else:
        render(result.to_dict())
        if config_note is not None and config_note["path"]:
            console().print(
                f"wrote [bold]{config_note['path']}[/]; check it with: rft train {config_note['path']} --dry-run"
            )
    if config_note is not None and config_note["error"]:
        if as_json:  # keep stdout one JSON object (it carries the error under "config")
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True).print(f"[bold red]error:[/] {escape(config_note['error'])}", highlight=False)
            raise typer.Exit(1)
        fail(config_note["error"], code=1)


def _advise_with_progress(
    rows: Sequence[Example],
    grader_set: GraderSet | None,
    eval_rows: Sequence[Example] | None,
    probe: ProbeOptions,
    pm: Any,
    inputs: dict[str, Any],
) -> Advice:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(f"probe: loading {probe.model}, checking graders", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, description=f"probe: sampling {probe.model}", completed=done, total=total)

        from rft.advise.advisor import advise as run_advisor

        return run_advisor(
            rows, grader_set=grader_set, eval_rows=eval_rows, probe=probe, pm=pm, progress=progress, inputs=inputs
        )


# ---------------------------------------------------------------------------
# the readable report
# ---------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    if isinstance(x, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in x.items())
    if isinstance(x, list):
        return ", ".join(map(str, x)) or "-"
    return str(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def render(advice: dict[str, Any]) -> None:
    """Print an advice object (the ``--json`` dict) as rich tables."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    con = console()
    rec = advice["recommendation"]
    con.print(Panel(f"[bold]{rec}[/]\n[dim]{escape(advice['branch'])}[/]", title="recommendation", expand=False))

    steps = Table(title="decision path", show_lines=False)
    for col in ("rule", "→", "because", "numbers used"):
        steps.add_column(col, overflow="fold")
    for s in advice["steps"]:
        steps.add_row(s["rule"], s["recommendation"], escape(s["because"]), escape(_fmt(s["numbers"])))
    con.print(steps)

    st = advice["stats"]
    ref, lab, dup, rea = st["references"], st["labels"], st["duplicates"], st["reasoning"]
    t = Table(title="dataset", show_header=False)
    t.add_column("measure")
    t.add_column("value", overflow="fold")
    t.add_row("rows", f"{st['rows']} ({st['format']}; columns: {escape(', '.join(st['columns']))})")
    t.add_row("with a reference output", f"{ref['rows']} ({_pct(ref['share'])})")
    t.add_row("reference length (words)", escape(_fmt(ref["words"])))
    t.add_row(
        "labels",
        f"{lab['cardinality']} distinct, entropy {_fmt(lab['entropy_bits'])} bits, "
        f"most common {escape(repr(lab['most_common']))} ({_pct(lab['most_common_share'])}), "
        f"classification: {'yes' if lab['is_classification'] else 'no'}",
    )
    t.add_row(
        "structured outputs",
        f"JSON {_pct(st['structured']['json_share'])}, tool calls {_pct(st['structured']['tool_call_share'])}",
    )
    t.add_row("duplicate prompts", f"exact {dup['exact']} ({_pct(dup['exact_share'])}), near {_pct(dup['near_share'])}")
    t.add_row(
        "reasoning indicators",
        f"step markers {_pct(rea['step_marker_share'])}, long references {_pct(rea['long_reference_share'])}, "
        f"math prompts {_pct(rea['math_prompt_share'])} → {'helps' if rea['helps'] else 'not indicated'}",
    )
    ev = st.get("eval")
    t.add_row(
        "eval split",
        "none"
        if ev is None
        else f"{ev['rows']} rows ({_fmt(ev['ratio_to_train'])}× train), prompt overlap "
        f"{_pct(ev['prompt_overlap_share'])}, label coverage {_pct(ev['label_coverage'])}",
    )
    con.print(t)

    v = advice["verifiability"]
    g = Table(title=f"graders: {escape(', '.join(v['graders'])) or 'none'}")
    for col in ("check", "output", "mean reward", "relative", "result"):
        g.add_column(col, overflow="fold")
    if not v["configured"]:
        g.add_row("configured", "", "", "", "[yellow]no graders (--graders)[/]")
    elif not v["columns_ok"]:
        g.add_row("columns", "", "", "", f"[red]{escape(v['columns_error'] or '')}[/]")
    else:
        r = v.get("reference")
        if r:
            ok = "[green]high[/]" if r["ok"] else "[red]low[/]"
            g.add_row(
                "references",
                f"{r['rows']} rows",
                _fmt(r["mean_reward"]),
                _pct(r["relative"]),
                ok + (f" ({r['errors']} errors)" if r["errors"] else ""),
            )
        for d in v["degenerate"]:
            res = "[bold red]GAMEABLE[/]" if d["gameable"] else "[green]low[/]"
            if d["errors"]:
                res += f" ({d['errors']} errors)"
            g.add_row(d["kind"], escape(d["output"]), _fmt(d["mean_reward"]), _pct(d["relative"]), res)
    con.print(g)

    p = advice.get("probe")
    if p:
        pt = Table(title=f"probe: {escape(str(p['model']))}", show_header=False)
        pt.add_column("measure")
        pt.add_column("value", overflow="fold")
        pt.add_row(
            "rows × samples",
            f"{p['rows']} × {p['samples_per_row']} (max {p['max_new_tokens']} tokens, T={p['temperature']})",
        )
        pt.add_row("pass@1", f"{_pct(p['pass_at_1'])} (pass: reward ≥ {_fmt(p['pass_score'])})")
        pt.add_row(f"pass@{p['samples_per_row']}", _pct(p["pass_at_k"]))
        pt.add_row("mean reward", _fmt(p["mean_reward"]))
        pt.add_row("zero-variance groups", _pct(p["zero_variance_share"]))
        for ex in p.get("examples") or []:
            pt.add_row("example", escape(f"{ex['prompt']} → {ex['completion']} (reward {_fmt(ex['reward'])})"))
        con.print(pt)

    if advice["signals"]:
        s = Table(title="plugin signals")
        for col in ("plugin", "signal", "value", "vote", "reason"):
            s.add_column(col, overflow="fold")
        for sig in advice["signals"]:
            s.add_row(
                escape(sig["plugin"]),
                escape(sig["name"]),
                escape(_fmt(sig["value"])),
                sig.get("vote") or "-",
                escape(sig["reason"]),
            )
        con.print(s)

    for w in advice["warnings"]:
        con.print(f"[yellow]warning:[/] {escape(w)}")
