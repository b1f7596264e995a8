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
    pilot: Annotated[
        bool,
        typer.Option(
            "--pilot",
            help="Run short pilots of SFT, RFT and SFT → RFT on --probe-model at an equal budget, evaluate each on "
            "the same held-out rows, and recommend the measured winner.",
        ),
    ] = False,
    pilot_budget: Annotated[
        str,
        typer.Option(
            "--pilot-budget",
            help="Budget of each pilot arm: seconds (120s, 2m), tokens (20000 tokens) or steps (10 steps).",
        ),
    ] = "120s",
    pilot_dir: Annotated[
        Path | None,
        typer.Option(
            "--pilot-dir", help="Keep the pilots' configs and run directories here (default: a temporary directory)."
        ),
    ] = None,
    pilot_eval_rows: Annotated[
        int, typer.Option("--pilot-eval-rows", min=1, help="Held-out rows each pilot arm is evaluated on (at most).")
    ] = 100,
) -> None:
    """Recommend SFT, RFT, SFT then RFT, RFT with a model judge, collecting labels, or nothing.

    Measures the data (references, labels, duplicates, reasoning indicators), checks the
    graders (do references score high, do degenerate outputs score low?) and, with
    --probe-model, samples the base model. With --pilot, trains each candidate briefly at an
    equal budget and recommends what measured best. Prints the decision path with every
    number used, and an estimate of the full run's training time.
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
        if pilot and (probe_model is None or grader_set is None):
            fail("--pilot trains and evaluates --probe-model with the graders: pass --probe-model and --graders")
        budget = None
        if pilot:
            from rft.advise.pilots import parse_budget

            budget = parse_budget(pilot_budget)
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
        if budget is not None and grader_set is not None and probe_model is not None:
            _pilots_with_progress(result, grader_set, budget, probe_model, pilot_dir, pilot_eval_rows)
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


def _pilots_with_progress(
    advice: Advice, grader_set: GraderSet, budget: Any, model: str, directory: Path | None, eval_rows: int
) -> None:
    """Run the pilots with a progress bar per arm, then follow the winner and re-estimate the cost."""
    import shutil
    import tempfile

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from rft.advise.cost import estimate_cost
    from rft.advise.pilots import apply_pilots, budget_warning, full_run_estimates, pilot_arms, run_pilots

    arms, _ = pilot_arms(advice, grader_set)
    workdir = directory if directory is not None else Path(tempfile.mkdtemp(prefix="rft-pilots-"))
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% of budget"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            tasks = {arm: bar.add_task(f"pilot {arm}: waiting", total=1.0) for arm in arms}

            def progress(arm: str, frac: float, status: str) -> None:
                if frac >= 0:
                    bar.update(tasks[arm], completed=frac, description=f"pilot {status}")
                else:
                    bar.update(tasks[arm], description=f"pilot {status}")

            result = run_pilots(
                advice,
                grader_set,
                budget=budget,
                model=model,
                directory=workdir,
                eval_rows=eval_rows,
                progress=progress,
            )
    finally:
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if directory is None:
        for arm in result.arms.values():
            arm.run_dir = None
    apply_pilots(advice, result)
    advice.cost = estimate_cost(advice, grader_set=grader_set)
    warning = budget_warning(result, full_run_estimates(advice, grader_set))
    if warning is not None:
        advice.warnings.append(warning)


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
        band = p.get("band")
        if band:
            pt.add_row(
                "learnable band",
                f"{_pct(band['mixed_share'])} of prompts with 0 < pass rate < 1 (GRPO signal), "
                f"{_pct(band['zero_share'])} at 0 (need SFT or easier prompts), {_pct(band['one_share'])} at 1 "
                "(nothing to learn)",
            )
            by_g = ", ".join(f"G={g}: {_pct(v)}" for g, v in band["signal_by_group_size"].items())
            pt.add_row(
                "num_generations",
                f"{band['num_generations'] or '-'} (expected prompts with a signal: {by_g})",
            )
        if p.get("seconds_per_completion") is not None:
            pt.add_row("generation time", f"{p['seconds_per_completion']:.3g} s per completion")
        for ex in p.get("examples") or []:
            pt.add_row("example", escape(f"{ex['prompt']} → {ex['completion']} (reward {_fmt(ex['reward'])})"))
        con.print(pt)

    if advice.get("pilot"):
        render_pilots(advice["pilot"], advice)
    if advice.get("cost"):
        _render_cost(advice["cost"])

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


def render_pilots(pilot: dict[str, Any], advice: dict[str, Any] | None = None) -> None:
    """Print the pilot table (the ``pilot`` object of ``--json``) and the winner next to the rules."""
    from rich.table import Table

    con = console()
    budget = pilot["budget"]
    amount = f"{budget['amount']:g} s" if budget["kind"] == "seconds" else f"{int(budget['amount'])} {budget['kind']}"
    t = Table(title=f"pilots on {pilot['model']}: {amount} each, {pilot['eval_rows']} held-out rows")
    for col in ("arm", "held-out pass rate", "mean reward", "steps", "train time", "wall time"):
        t.add_column(col, overflow="fold")
    base = pilot.get("base")
    if base:
        t.add_row("base model", _fmt(base["pass_rate"]), _fmt(base["mean_reward"]), "0", "-", "-")
    for name, arm in pilot["arms"].items():
        steps = " + ".join(f"{n} {stage}" for stage, n in arm["steps"].items())
        label = f"[bold]{name}[/] (winner)" if name == pilot["winner"] else name
        t.add_row(
            label,
            _fmt(arm["pass_rate"]),
            _fmt(arm["mean_reward"]),
            steps,
            f"{arm['train_s']:.0f} s" + (" (budget)" if arm["stopped_by_budget"] else ""),
            f"{arm['wall_s']:.0f} s",
        )
    for name, why in pilot.get("skipped", {}).items():
        t.add_row(f"[dim]{name}[/]", "-", "-", "-", "-", f"[dim]skipped: {why}[/]")
    con.print(t)
    if pilot["agrees"]:
        con.print(
            f"measured winner [bold]{pilot['winner']}[/] = rule-based recommendation {pilot['rule_recommendation']}"
        )
    else:
        con.print(
            f"measured winner [bold]{pilot['winner']}[/] ≠ rule-based recommendation "
            f"{pilot['rule_recommendation']}: [bold yellow]they disagree[/]; the recommendation follows the measurement"
        )
    con.print(f"pilots took {pilot['wall_s'] / 60:.1f} min")


def _render_cost(cost: dict[str, Any]) -> None:
    from rich.markup import escape

    con = console()
    parts = []
    for stage, c in cost["stages"].items():
        if c["step_s"] is None:
            parts.append(f"{stage} {c['steps']} steps (step time not measured)")
        else:
            parts.append(f"{stage} {c['steps']} steps × {c['step_s']:.2f} s")
    total = "unknown" if cost["total_s"] is None else f"≈ {cost['total_s'] / 60:.1f} min"
    con.print(
        f"estimated full-run training time ({cost['recommendation']}): {total} — {escape('; '.join(parts))}\n"
        f"[dim]{escape(cost['note'])}[/]"
    )
