"""``rft grade``: score saved completions with a grader set, without training.

Rows are read by the one row model (:func:`rft.data.to_example`): graders get the row's
columns as inputs and its prompt as chat messages, exactly as in training and evaluation.
TRL reward functions get prompts and completions in the row's format (chat messages for
conversational rows, text for standard ones) and ``completion_ids`` from a tokenizer
(``--tokenizer``, ``--model`` or a run config's ``model``), or from a ``completion_ids``
field of the completions file.

Saved conversations and trajectories: without ``--completions`` and ``--field``, each row's own
``messages`` are graded — the messages before the first assistant message are the prompt, the
rest the completion (a trajectory's assistant tool calls, tool results and final reply; graders
get every call as ``tool_calls`` and the whole conversation as ``messages``). A row's
``state`` and ``episode`` keys (a rollout's environment state and summary) reach graders as
``state`` and ``episode``, also with ``--field`` (e.g. ``--field completion`` on a run's
``rollouts.jsonl``, whose ``completion_messages`` are the trajectory when it has them).

Group graders (``@rft.grader(group=True)``) get the completions of one prompt together:
rows with the same value in the ``--group-by`` column (e.g. ``prompt_id``), by default
completions of identical prompts. Groups are never split across chunks of a run.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from rft.core import ERROR_KINDS, GraderSet, Outcome, OutcomeKind, RewardError, Sample
from rft.core.errors import ConfigError, DataError, RFTError
from rft.core.parsing import completion_text
from rft.core.text import percentile, shorten
from rft.data import RowFields, to_example
from rft.train.rewards import add_completion_ids, row_is_conversational

logger = logging.getLogger(__name__)

__all__ = ["chunks", "group_keys", "load_samples", "load_tokenizer", "run_grade", "saved_conversation", "summarize"]

CHUNK = 256


def load_samples(
    rows: list[dict[str, Any]],
    *,
    completions: Path | None,
    field: str | None,
    data_file: str,
    fields: RowFields | None = None,
) -> list[tuple[int, Sample]]:
    """Pair rows with completions: from a completions JSONL (aligned by line, or with a
    ``row`` index per line for several completions per row) or from a column of the data.

    A completion is text or TRL's ``[{"role": "assistant", "content": …}]``; a completions
    line may carry ``tool_calls`` and ``completion_ids``.
    """
    if completions is not None and field is not None:
        raise RFTError("give exactly one of --completions FILE or --field COLUMN")
    out: list[tuple[int, Sample]] = []
    if completions is None and field is None:
        return [
            (i, saved_conversation(row, data_file=data_file, line=i + 1, fields=fields)) for i, row in enumerate(rows)
        ]
    if completions is None and field is not None:
        for i, row in enumerate(rows):
            if field not in row:
                raise DataError(
                    f"row has no column {field!r} (columns: {', '.join(sorted(row))})", file=data_file, line=i + 1
                )
            item = {k: v for k, v in row.items() if k != field}
            value = row[field]
            if isinstance(row.get("completion_messages"), list):  # a rollout's trajectory (rollouts.jsonl)
                value = row["completion_messages"]
            try:
                out.append((i, _sample(item, value, fields=fields)))
            except ValueError as err:
                raise DataError(str(err), file=data_file, line=i + 1) from None
        return out
    assert completions is not None  # exactly one of the two was given (checked above)
    if not completions.exists():
        raise DataError("file not found", file=str(completions))
    with completions.open(encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    indexed = False
    for k, (lineno, line) in enumerate(lines):
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise DataError(f"invalid JSON: {err}", file=str(completions), line=lineno) from None
        if isinstance(obj, str):
            obj = {"completion": obj}
        if not isinstance(obj, dict) or "completion" not in obj:
            raise DataError("expected a string or an object with `completion`", file=str(completions), line=lineno)
        indexed = indexed or "row" in obj
        idx = obj.get("row", k)
        if not isinstance(idx, int) or not 0 <= idx < len(rows):
            raise DataError(
                f"row index {idx!r} is outside the data's {len(rows)} rows", file=str(completions), line=lineno
            )
        ids = obj.get("completion_ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(t, int) for t in ids)):
            raise DataError("`completion_ids` must be a list of integers", file=str(completions), line=lineno)
        try:
            out.append((idx, _sample(rows[idx], obj["completion"], obj.get("tool_calls"), ids, fields=fields)))
        except ValueError as err:
            raise DataError(str(err), file=data_file, line=idx + 1) from None
    if not indexed and len(lines) != len(rows):
        raise DataError(
            f"{len(lines)} completions for {len(rows)} rows; align them line by line or give each a `row` index",
            file=str(completions),
        )
    return out


def _prompt(row: dict[str, Any], fields: RowFields | None = None) -> list[dict[str, Any]] | None:
    """The row's prompt as the row model reads it; None for a row without one (graders
    that need the prompt then report it missing)."""
    try:
        return to_example(row, fields=fields).prompt
    except ValueError as err:
        logger.debug("row without a usable prompt: %s", err)
        return None


def _sample(
    row: dict[str, Any],
    completion: Any,
    tool_calls: Any = None,
    completion_ids: list[int] | None = None,
    *,
    fields: RowFields | None = None,
) -> Sample:
    conversational = row_is_conversational(row, fields)
    messages = completion if isinstance(completion, list) and conversational is not False else None
    state, episode = _trajectory_keys(row)
    return Sample(
        completion=completion_text(completion),
        item=row,
        prompt=_prompt(row, fields),
        tool_calls=tool_calls,
        completion_messages=messages,
        completion_ids=completion_ids,
        conversational=conversational,
        state=state,
        episode=episode,
    )


def _trajectory_keys(row: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """A row's ``state`` and ``episode`` (a rollout's environment state and summary).

    Raises:
        ValueError: ``episode`` is not an object.
    """
    episode = row.get("episode")
    if episode is not None and not isinstance(episode, dict):
        raise ValueError(f"`episode` must be an object like {{'success': true, 'turns': 2}}, got {shorten(episode)}")
    return row.get("state"), episode


def saved_conversation(row: dict[str, Any], *, data_file: str, line: int, fields: RowFields | None = None) -> Sample:
    """The sample of a saved conversation or trajectory: the row's ``messages`` after the
    prompt (:func:`rft.data.to_example`'s ``reference_messages``) are the completion.

    Raises:
        DataError: the row has no assistant message to grade, or is malformed (naming the line).
    """
    try:
        ex = to_example(row, fields=fields, source=f"{data_file}:{line}")
        state, episode = _trajectory_keys(row)
    except ValueError as err:
        raise DataError(str(err), file=data_file, line=line) from None
    if not ex.reference_messages:
        raise DataError(
            "no completion to grade: without --completions or --field each row's `messages` must end with the "
            "assistant's reply (a saved conversation or trajectory); give --completions FILE or --field COLUMN",
            file=data_file,
            line=line,
        )
    return Sample(
        completion=completion_text(ex.reference_messages),
        item=row,
        prompt=ex.prompt,
        completion_messages=ex.reference_messages,
        conversational=True,
        state=state,
        episode=episode,
    )


def load_tokenizer(tokenizer: str | None, model: str | None, *, base_dir: Path | None = None) -> Any:
    """The tokenizer of ``--tokenizer`` (a directory or hub name) or of ``--model`` (a model
    reference as a run config's ``model:`` takes it: a directory, ``tiny``, a GGUF file …).

    Raises:
        ConfigError: the tokenizer cannot be loaded (naming what was tried).
    """
    from transformers import AutoTokenizer

    try:
        if tokenizer:
            return AutoTokenizer.from_pretrained(tokenizer)
        if not model:
            raise ConfigError("no tokenizer to load: give --tokenizer DIR_OR_NAME or --model MODEL")
        from rft.models.resolve import resolve_model

        resolved = resolve_model(model, base_dir=base_dir)
        kwargs = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
        return AutoTokenizer.from_pretrained(str(resolved.path), **kwargs)
    except RFTError:
        raise
    except Exception as err:
        what = f"--tokenizer {tokenizer!r}" if tokenizer else f"the tokenizer of model {model!r}"
        raise ConfigError(
            f"cannot load {what}: {type(err).__name__}: {err}; give a local tokenizer or model directory"
        ) from err


def group_keys(
    pairs: Sequence[tuple[int, Sample]], rows: Sequence[dict[str, Any]], group_by: str | None, *, data_file: str
) -> list[Hashable]:
    """The group of each sample for group graders: its row's ``group_by`` value, else its prompt.

    Raises:
        DataError: a row lacks the ``group_by`` column (naming the row and the columns it has).
    """
    if group_by is None:
        from rft.scoring import default_group_keys

        return list(default_group_keys([s for _, s in pairs]))
    keys: list[Hashable] = []
    for idx, _ in pairs:
        row = rows[idx]
        if group_by not in row:
            raise DataError(
                f"--group-by {group_by!r}: the row has no such column (columns: {', '.join(sorted(row))}); "
                "give every row the prompt id, or leave --group-by out to group identical prompts",
                file=data_file,
                line=idx + 1,
            )
        keys.append(json.dumps(row[group_by], sort_keys=True, default=str))
    return keys


def chunks(keys: Sequence[Hashable], size: int) -> list[list[int]]:
    """Sample indices in chunks of about ``size`` made of whole groups (a group larger than
    ``size`` is a chunk of its own), groups in order of first appearance.

    >>> chunks(["a", "b", "a", "c"], 2)
    [[0, 2], [1, 3]]
    """
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out: list[list[int]] = []
    for members in groups.values():
        if out and len(out[-1]) + len(members) <= size:
            out[-1].extend(members)
        else:
            out.append(list(members))
    return out


def _needs_ids(grader_set: GraderSet) -> list[str]:
    """Ids of graders that name ``completion_ids`` (TRL functions that count tokens)."""
    return [e.id for e in grader_set if e.grader.trl_style and "completion_ids" in e.grader.inputs]


def summarize(grader_set: GraderSet, outcomes: Sequence[dict[str, Outcome]]) -> list[dict[str, Any]]:
    """Per grader: mean, std, min, max of scores, counts of each kind, latency p50/p95."""
    rows = []
    for e in grader_set:
        outs = [per[e.id] for per in outcomes]
        scores = [o.score for o in outs if o.kind is OutcomeKind.SCORE and o.score is not None]
        lat = [o.latency_s for o in outs if not o.cached]
        row: dict[str, Any] = {
            "grader": e.id,
            "weight": e.weight,
            "n": len(outs),
            "mean": statistics.fmean(scores) if scores else None,
            "std": statistics.pstdev(scores) if len(scores) > 1 else (0.0 if scores else None),
            "min": min(scores) if scores else None,
            "max": max(scores) if scores else None,
            "scored": len(scores),
            "not_applicable": sum(o.kind is OutcomeKind.NOT_APPLICABLE for o in outs),
            "latency_p50_ms": percentile(lat, 50) * 1000 if lat else None,
            "latency_p95_ms": percentile(lat, 95) * 1000 if lat else None,
        }
        for k in ERROR_KINDS:
            row[k.value] = sum(o.kind is k for o in outs)
        rows.append(row)
    return rows


def run_grade(
    *,
    data: Path,
    graders_file: Path | None,
    completions: Path | None,
    field: str | None,
    plugins: list[str],
    out: Path | None,
    executor: str,
    workers: int,
    address: str | None,
    config: Path | None = None,
    tokenizer: str | None = None,
    model: str | None = None,
    group_by: str | None = None,
) -> int:
    """Run the command; returns the exit code (0 ok, 1 a grader errored, 2 bad input).

    Args:
        config: a run config: its graders (unless ``graders_file``), its model (for
            ``completion_ids``, unless ``tokenizer``/``model``) and how it reads rows.
        tokenizer: a tokenizer directory or hub name for ``completion_ids``.
        model: a model reference whose tokenizer gives ``completion_ids``.
        group_by: the column naming each row's prompt, for group graders (default:
            completions of identical prompts form a group).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from rft.data import load_rows
    from rft.plugins import grader_set_from_file
    from rft.scoring import ScoringOptions, make_executor

    con = Console()
    try:
        fields: RowFields | None = None
        model_base: Path | None = None
        if config is not None:
            from rft.config.run import load_config

            cfg = load_config(config, check_trl=False)
            fields = RowFields.from_config(cfg.data)
            if not tokenizer and not model:
                model, model_base = cfg.model.name, cfg.base_dir
            grader_set = (
                grader_set_from_file(graders_file, plugins=plugins) if graders_file else cfg.grader_set(plugins=plugins)
            )
        elif graders_file is not None:
            grader_set = grader_set_from_file(graders_file, plugins=plugins)
        else:
            raise RFTError("give --graders FILE (a grader-set file) or --config RUN.yaml (a run config with graders)")
        rows = load_rows(data)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
        grader_set.check_inputs(columns - ({field} if field else set()), source=str(data))
        pairs = load_samples(rows, completions=completions, field=field, data_file=str(data), fields=fields)
        wanting = _needs_ids(grader_set)
        missing = [s for _, s in pairs if s.completion_ids is None]
        if missing and (tokenizer or model) and any(e.grader.trl_style for e in grader_set):
            add_completion_ids(missing, load_tokenizer(tokenizer, model, base_dir=model_base))
        elif missing and wanting:
            raise RFTError(
                f"grader {wanting[0]!r} asks for completion_ids (the token ids of each completion): give "
                "--tokenizer DIR_OR_NAME or --model MODEL (e.g. the run's model), --config RUN.yaml (its model), "
                "or a `completion_ids` list on each line of --completions"
            )
        grouped = any(e.grader.group for e in grader_set)
        keys = group_keys(pairs, rows, group_by, data_file=str(data)) if grouped else None
    except RFTError as err:
        con.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return 2
    samples = [s for _, s in pairs]
    options = ScoringOptions(executor=executor, num_workers=workers, address=address, error_budget=1.0)
    outcomes: list[dict[str, Outcome]] = [{} for _ in samples]
    rewards: list[float | None] = [None] * len(samples)
    reward_errors: list[RewardError | None] = [None] * len(samples)
    parts = (
        chunks(keys, CHUNK)
        if keys is not None
        else [list(range(s, min(s + CHUNK, len(samples)))) for s in range(0, len(samples), CHUNK)]
    )
    try:
        with make_executor(grader_set, executor, options) as ex, Progress(console=con, transient=True) as progress:
            task = progress.add_task(f"grading {len(samples)} samples", total=len(samples))
            for part in parts:
                batch = [samples[i] for i in part]
                if keys is not None:
                    result = ex.score(batch, groups=[keys[i] for i in part])
                else:
                    result = ex.score(batch)
                for j, (i, per, rew) in enumerate(zip(part, result.outcomes, result.rewards, strict=True)):
                    outcomes[i], rewards[i] = per, rew
                    reward_errors[i] = result.reward_errors[j] if j < len(result.reward_errors) else None
                progress.advance(task, len(result.outcomes))
    except RFTError as err:
        con.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return 2

    summary = summarize(grader_set, outcomes)
    from rich import box

    table = Table(title=f"{len(samples)} samples · {data}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = ["grader", "weight", "mean", "std", "min", "max", "n/a", "errors", "p50ms", "p95ms"]
    for c in cols:
        table.add_column(c, justify="left" if c == "grader" else "right", no_wrap=True)

    def f(x: Any, nd: int = 3) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    for r in summary:
        table.add_row(
            r["grader"],
            f"{r['weight']:g}",
            f(r["mean"]),
            f(r["std"]),
            f(r["min"]),
            f(r["max"]),
            str(r["not_applicable"]),
            (f"[red]{n_errors}[/]" if (n_errors := sum(r[k.value] for k in ERROR_KINDS)) else "0"),
            f(r["latency_p50_ms"], 2),
            f(r["latency_p95_ms"], 2),
        )
    con.print(table)
    for r in summary:  # the errors column is a total; its kinds, per grader
        kinds = ", ".join(f"{k.value} {r[k.value]}" for k in ERROR_KINDS if r[k.value])
        if kinds:
            con.print(f"[red]{r['grader']}[/]: {kinds}", highlight=False)
    valid = [r for r in rewards if r is not None]
    if valid:
        con.print(f"reward (combined): mean {statistics.fmean(valid):.3f} over {len(valid)} samples")
    failed = [(idx, e) for (idx, _), e in zip(pairs, reward_errors) if e is not None]
    if failed:  # a formula that failed is counted and shown, never a silent reward
        by_kind = Counter(e.kind for _, e in failed)
        idx, first = failed[0]
        con.print(
            f"[red]no combined reward for {len(failed)} sample(s)[/] "
            f"({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))}); first: row {idx}: {escape(first.reason)}",
            highlight=False,
        )

    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for (idx, s), per, rew, failed_reward in zip(pairs, outcomes, rewards, reward_errors):
                rec = {
                    "row": idx,
                    "completion": s.completion,
                    "reward": rew,
                    "graders": {g: o.to_dict() for g, o in per.items()},
                }
                if failed_reward is not None:
                    rec["reward_error"] = {"kind": failed_reward.kind, "reason": failed_reward.reason}
                fh.write(json.dumps(rec, default=str) + "\n")
        tmp.replace(out)
        con.print(f"wrote {len(outcomes)} results to {out}")

    for (idx, s), per in zip(pairs, outcomes):
        for gid, o in per.items():
            if o.kind.is_error:
                n_err = sum(1 for p in outcomes for x in p.values() if x.kind.is_error)
                con.print(f"[bold red]{n_err} grader error(s).[/] First: row {idx}, grader {gid!r} ({o.kind.value})")
                con.print(f"  {escape(o.error or '')}", highlight=False)
                con.print(f"  completion: {escape(s.completion[:200])!r}", highlight=False)
                if o.traceback:
                    con.print(escape("  " + "\n  ".join(o.traceback.strip().splitlines()[-6:])), highlight=False)
                return 1
    return 0
