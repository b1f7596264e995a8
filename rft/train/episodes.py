"""Episodes of an :class:`rft.Environment`: in TRL's multi-turn rollouts, and in evaluation.

Training runs episodes through TRL's own machinery: :func:`trl_environment_factory` makes
the ``environment_factory`` of ``GRPOTrainer`` — one :class:`Episode` per rollout, reset
from its dataset row, whose methods are the environment's tools. TRL renders their schemas
in the prompt, parses the model's tool calls with the chat template's parser, calls the
methods, appends the results as ``tool`` messages and masks the tokens it wrote out of the
loss (its ``tool_mask``). The graders then see the episode (:func:`trajectory_sample`).

Evaluation runs the same episodes with greedy decoding (:func:`run_episodes`): generate,
parse the reply, call the tools, append their results, generate again, up to the
environment's ``max_turns`` rounds of tool calls.

A tool call runs in its own thread with the tool's timeout: a tool that raises, hangs past
the timeout, is unknown or gets bad arguments returns the error text to the model
(``"error: …"``) and is counted in the episode's ``tool_errors``. A hung tool's thread cannot
be killed and is left to finish; run code the model writes in :mod:`rft.sandbox`, which
kills it.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rft.core import Sample
from rft.core.environment import STATE_PARAM, Environment, Tool, tool_result_text
from rft.data import ROW_INDEX

logger = logging.getLogger(__name__)

__all__ = [
    "Episode",
    "call_tool",
    "episode_metrics",
    "episode_stats",
    "resolve_environment",
    "run_episodes",
    "trajectory_sample",
    "trl_environment_factory",
]


def resolve_environment(cfg: Any, grader_set: Any) -> Environment | None:
    """The run's environment (``environment:``), its overrides applied; None without one.

    It is looked up in the plugins the grader set loaded (its ``plugins:``), the built-ins
    and installed plugin packages.

    Raises:
        ConfigError: the name is unknown, or a tool has no JSON schema (the message names
            the key ``environment``).
    """
    import dataclasses

    from rft.core.errors import ConfigError, PluginError
    from rft.plugins import get_environments, get_plugin_manager

    settings = getattr(cfg, "environment", None)
    if settings is None:
        return None
    refs = list(((getattr(grader_set, "spec", None) or {}).get("plugins")) or [])
    try:
        env = get_environments(get_plugin_manager(refs)).get(settings.name)
        overrides: dict[str, Any] = {}
        if settings.max_turns is not None:
            overrides["max_turns"] = int(settings.max_turns)
        if settings.tool_timeout is not None:
            overrides["tool_timeout"] = float(settings.tool_timeout)
        env = dataclasses.replace(env, **overrides) if overrides else env
        env.schemas()
    except (PluginError, ConfigError) as err:
        raise ConfigError(str(err), file=getattr(cfg, "source", None), key="environment") from err
    return env


def episode_stats(samples: Sequence[Sample]) -> dict[str, Any]:
    """Task success rate and tool use over finished episodes (eval summaries, reports)."""
    eps: list[dict[str, Any]] = [s.episode for s in samples if s.episode is not None]
    if not eps:
        return {}
    judged = [e["success"] for e in eps if e.get("success") is not None]
    calls = sum(int(e.get("tool_calls") or 0) for e in eps)
    return {
        "episodes": len(eps),
        "success_rate": (sum(1 for x in judged if x) / len(judged)) if judged else None,
        "mean_turns": sum(int(e.get("turns") or 0) for e in eps) / len(eps),
        "mean_tool_calls": calls / len(eps),
        "tool_errors": sum(int(e.get("tool_errors") or 0) for e in eps),
        "episodes_with_tool_calls": sum(1 for e in eps if e.get("tool_calls")),
    }


def episode_metrics(samples: Sequence[Sample]) -> dict[str, float]:
    """Per-batch metrics of a training step's episodes (``episodes/*`` in metrics.jsonl)."""
    stats = episode_stats(samples)
    if not stats:
        return {}
    calls = stats["mean_tool_calls"] * stats["episodes"]
    out = {
        "episodes/tool_calls": float(stats["mean_tool_calls"]),
        "episodes/turns": float(stats["mean_turns"]),
        "episodes/tool_errors_per_call": float(stats["tool_errors"] / calls) if calls else 0.0,
    }
    if stats["success_rate"] is not None:
        out["episodes/success_rate"] = float(stats["success_rate"])
    return out


def call_tool(env: Environment, t: Tool, arguments: Mapping[str, Any], state: Any) -> tuple[str, str | None]:
    """Call ``t`` with the model's ``arguments`` (and ``state``) within its timeout.

    Returns:
        ``(text for the model, error kind or None)``; kinds: ``timeout``, ``bad_arguments``,
        ``raised``.
    """
    if not isinstance(arguments, Mapping):
        return f"error: tool {t.name!r} needs its arguments as a JSON object, got {arguments!r}", "bad_arguments"
    kwargs = dict(arguments)
    if STATE_PARAM in kwargs:
        return f"error: tool {t.name!r} has no argument {STATE_PARAM!r}", "bad_arguments"
    try:
        t.signature.bind(**kwargs)
    except TypeError as err:
        return f"error: bad arguments for tool {t.name!r}: {err}", "bad_arguments"
    if t.takes_state:
        kwargs[STATE_PARAM] = state
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = t.fn(**kwargs)
        except BaseException as exc:  # handed back to the model as text, and counted
            box["error"] = exc

    timeout = env.timeout_of(t)
    thread = threading.Thread(target=run, name=f"rft-tool-{t.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning("tool %r did not return within %gs; its thread is left to finish", t.name, timeout)
        return f"error: tool {t.name!r} did not return within {timeout:g}s", "timeout"
    if "error" in box:
        raised = box["error"]
        return f"error: tool {t.name!r} raised {type(raised).__name__}: {raised}", "raised"
    return tool_result_text(box.get("value")), None


class Episode:
    """One episode of an environment; TRL calls its tool methods (see the module docs).

    TRL exposes every public method but ``reset`` as a tool, so the episode's own helpers
    are private (``_call_tool``, ``_summary``).

    Attributes:
        state: the environment's state of this episode (from its dataset row).
        calls: every tool call, in order: ``{"name", "arguments", "result", "error", "latency_s"}``.
    """

    env: Environment
    rows: Sequence[Mapping[str, Any]] | None

    def __init__(self) -> None:
        self.state: Any = {}
        self.row: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []

    def reset(self, **row: Any) -> None:
        """Start an episode on a dataset row (TRL passes the row's columns)."""
        if self.rows is not None and ROW_INDEX in row:
            full = dict(self.rows[int(row[ROW_INDEX])])
        else:
            full = {k: v for k, v in row.items() if k != ROW_INDEX}
        self.row = full
        self.state = self.env.new_state(full)
        self.calls = []
        return None

    def _call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Run one tool call of the model and record it."""
        t0 = time.perf_counter()
        try:
            t = self.env.tool(name)
        except KeyError:
            text = f"error: there is no tool {name!r}; tools: {[x.name for x in self.env.tools]}"
            kind: str | None = "unknown_tool"
        else:
            if self.env.is_done(self.state):
                text, kind = "error: the episode is over; answer without calling tools", "episode_over"
            else:
                text, kind = call_tool(self.env, t, arguments, self.state)
        self.calls.append(
            {
                "name": name,
                "arguments": copy.deepcopy(dict(arguments)) if isinstance(arguments, Mapping) else arguments,
                "result": text,
                "error": kind,
                "latency_s": round(time.perf_counter() - t0, 4),
            }
        )
        return text

    def _summary(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The episode as graders see it (``Sample.episode``), at its end."""
        assistant_turns = sum(1 for m in messages if m.get("role") == "assistant")
        return {
            "environment": self.env.name,
            "turns": assistant_turns,
            "tool_calls": len(self.calls),
            "tool_errors": sum(1 for c in self.calls if c["error"]),
            "success": self.env.succeeded(self.state, messages),
            "done": self.env.is_done(self.state),
            "calls": self.calls,
        }


def _tool_method(t: Tool) -> Callable[..., Any]:
    """A method named like the tool, with the signature and docstring the model should see."""

    def method(self: Episode, **kwargs: Any) -> str:
        return self._call_tool(t.name, kwargs)

    method.__name__ = method.__qualname__ = t.name
    method.__doc__ = t.doc
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *t.signature.parameters.values()]
    method.__signature__ = t.signature.replace(parameters=params)  # type: ignore[attr-defined]
    method.__annotations__ = t.annotations
    return method


def episode_class(env: Environment, rows: Sequence[Mapping[str, Any]] | None = None) -> type[Episode]:
    """An :class:`Episode` subclass whose public methods are ``env``'s tools (what TRL calls)."""
    env.schemas()  # every tool has a schema, or a ConfigError names the one that has none
    namespace: dict[str, Any] = {t.name: _tool_method(t) for t in env.tools}
    namespace.update(env=env, rows=rows, __doc__=f"An episode of environment {env.name!r}.")
    return type(f"{env.name}_episode", (Episode,), namespace)


def trl_environment_factory(env: Environment, rows: Sequence[Mapping[str, Any]] | None = None) -> type[Episode]:
    """``GRPOTrainer(environment_factory=...)`` for ``env``: a class TRL instantiates per rollout.

    Args:
        rows: the dataset rows the ``_rft_row`` column indexes; episodes start from the
            full row (all its columns), not only those in the training dataset.
    """
    return episode_class(env, rows)


def trajectory_sample(
    prompt: list[dict[str, Any]],
    completion_messages: list[dict[str, Any]],
    episode: Episode,
    *,
    item: Mapping[str, Any],
    step: int | None = None,
    completion_ids: list[int] | None = None,
    trainer_state: Any = None,
) -> Sample:
    """The :class:`Sample` of a finished episode: the conversation, its tool calls, the state."""
    final = next((m for m in reversed(completion_messages) if m.get("role") == "assistant"), None)
    calls = [tc for m in completion_messages if m.get("role") == "assistant" for tc in (m.get("tool_calls") or [])]
    return Sample(
        completion=str((final or {}).get("content") or ""),
        item=item,
        prompt=prompt,
        tool_calls=calls,
        step=step,
        completion_messages=completion_messages,
        completion_ids=completion_ids,
        conversational=True,
        trainer_state=trainer_state,
        state=episode.state,
        episode=episode._summary([*prompt, *completion_messages]),
    )


def run_episodes(
    model: Any,
    tokenizer: Any,
    env: Environment,
    prompts: Sequence[list[dict[str, Any]]],
    rows: Sequence[Mapping[str, Any]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    desc: str = "episodes",
) -> list[Sample]:
    """Run one greedy episode per prompt (evaluation); each becomes a trajectory :class:`Sample`.

    Each turn generates for every unfinished episode in batches, parses the replies with
    the tokenizer's tool-call parser, runs the tools and appends their results (or, for a
    reply without tool calls, the environment's feedback as a user message); an episode
    ends with a reply that gets neither, after ``env.max_turns`` rounds (one more reply
    follows the last round), or when its conversation would pass the model's length.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed
    from trl.chat_template_utils import parse_response

    set_seed(seed)
    tokenizer.padding_side = "left"
    schemas: list[Any] = list(env.schemas())
    cls = episode_class(env)
    episodes = [cls() for _ in prompts]
    for ep, row in zip(episodes, rows, strict=True):
        ep.reset(**dict(row))
    convo = [list(copy.deepcopy(p)) for p in prompts]
    completion: list[list[dict[str, Any]]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress or not prompts, leave=False)
    try:
        for turn in range(env.max_turns + 1):
            if not active:
                break
            still: list[int] = []
            for start in range(0, len(active), batch_size):
                chunk = active[start : start + batch_size]
                ids = [
                    tokenizer.apply_chat_template(
                        convo[i], tools=schemas, add_generation_prompt=True, tokenize=True, return_dict=True
                    )["input_ids"]
                    for i in chunk
                ]
                width = max(len(x) for x in ids)
                pad = tokenizer.pad_token_id
                input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids])
                mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
                with torch.no_grad():
                    out = model.generate(
                        input_ids=input_ids.to(model.device),
                        attention_mask=mask.to(model.device),
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        pad_token_id=pad,
                    )
                for row_i, i in enumerate(chunk):
                    new = [int(t) for t in out[row_i, width:].tolist()]
                    while new and new[-1] == pad and pad != tokenizer.eos_token_id:
                        new.pop()
                    reply = parse_response(tokenizer, new, prefix=list(ids[row_i]), tools=schemas)
                    reply = {"role": "assistant", "content": reply.get("content") or "", **_calls_of(reply)}
                    convo[i].append(reply)
                    completion[i].append(reply)
                    calls = reply.get("tool_calls") or []
                    feedback = None if calls or turn >= env.max_turns else env.feedback_for(episodes[i].state, convo[i])
                    if turn >= env.max_turns or (not calls and feedback is None):
                        bar.update(1)
                        continue
                    for tc in calls:
                        fn = tc.get("function") or {}
                        text = episodes[i]._call_tool(str(fn.get("name")), fn.get("arguments") or {})
                        msg = {"role": "tool", "name": str(fn.get("name")), "content": text}
                        convo[i].append(msg)
                        completion[i].append(msg)
                    if feedback is not None:  # the environment answers a reply without tool calls
                        convo[i].append({"role": "user", "content": feedback})
                        completion[i].append({"role": "user", "content": feedback})
                    if limit and len(ids[row_i]) + len(new) + max_new_tokens >= limit:
                        bar.update(1)  # the next turn would not fit the model
                        continue
                    still.append(i)
            active = still
    finally:
        bar.close()
        if was_training:
            model.train()
    return [trajectory_sample(list(p), completion[i], episodes[i], item=dict(rows[i])) for i, p in enumerate(prompts)]


def _calls_of(reply: Mapping[str, Any]) -> dict[str, Any]:
    calls = reply.get("tool_calls")
    return {"tool_calls": list(calls)} if calls else {}
