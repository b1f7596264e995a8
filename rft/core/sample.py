"""Samples: one completion of one dataset row, as graders see it, and the names injected from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EPISODE_KEYS", "INJECTED_NAMES", "REWARD_KIT_NAMES", "TRL_NAMES", "MissingInputError", "Sample"]

#: Argument names filled from the sample rather than from a dataset column.
INJECTED_NAMES = frozenset(
    {"completion", "prompt", "messages", "item", "tool_calls", "step", "sample", "state", "episode"}
)
#: Argument names of TRL-style reward functions ``(prompts, completions, **kwargs)``.
TRL_NAMES = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})
#: Argument names a reward-kit / Eval Protocol function ``(messages, ground_truth=None, **kwargs)``
#: gets from the sample (``ground_truth`` is the row's column of that name, None without one).
REWARD_KIT_NAMES = frozenset({"messages", "ground_truth", "original_messages"})
#: The keys of :attr:`Sample.episode`, the summary of one multi-turn rollout.
EPISODE_KEYS = ("environment", "turns", "tool_calls", "tool_errors", "success", "done")


class MissingInputError(KeyError):
    """A grader asks for an input the sample does not carry (``completion_ids`` without a
    tokenizer, ``state`` of a sample that is no environment's rollout); the message says why."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


#: Why an injected name has no value on a sample that is not a trajectory.
_NO_TRAJECTORY = {
    "state": (
        "this sample has no `state`: only a multi-turn rollout of an environment, or a saved trajectory "
        "with a `state` key, carries one; give the argument a default (`state=None`) to grade other samples too"
    ),
    "episode": (
        "this sample has no `episode`: only a multi-turn rollout of an environment, or a saved trajectory "
        "with an `episode` key, carries one; give the argument a default (`episode=None`) to grade other samples too"
    ),
}


@dataclass
class Sample:
    """One completion of one dataset row, as graders see it.

    A multi-turn rollout (an agent calling tools) is a sample too: ``completion_messages``
    holds the completion's messages in order (assistant messages with ``tool_calls``, the
    ``tool`` messages with their results, the final assistant message), ``completion`` is
    the final assistant message's text, ``state`` the environment's final per-episode state
    and ``episode`` the summary of the episode.

    Args:
        completion: the model's output text (of a multi-turn rollout: the final assistant
            message's text).
        item: the dataset row (its columns are injectable by name).
        prompt: the prompt as text, or as a list of chat messages.
        tool_calls: tool calls made by the completion (OpenAI shape); when not given, those
            of ``completion_messages``' assistant messages, else parsed from the text.
        step: the training step, when scored during training.
        completion_messages: the completion as chat messages, exactly as TRL passes a
            conversational completion (``[{"role": "assistant", "content": …}]``; of a
            multi-turn rollout every assistant and tool message after the prompt); built
            from ``completion`` when None and the sample is conversational.
        completion_ids: the completion's token ids (TRL's ``completion_ids``), when known.
        conversational: whether the row is in TRL's conversational format (TRL-style
            functions then get message lists, else strings); None: conversational when
            ``completion_messages`` is given or the prompt is a list of messages.
        trainer_state: a snapshot of the trainer's state during training (attributes of
            ``transformers.TrainerState`` without ``log_history``); None outside training.
        state: the environment's final per-episode state (JSON-able data) of a multi-turn
            rollout; None for other samples.
        episode: the summary of a multi-turn rollout, ``{"environment": str, "turns": int,
            "tool_calls": int, "tool_errors": int, "success": bool | None, "done": bool}``
            (:data:`EPISODE_KEYS`); None for other samples.
    """

    completion: str
    item: Mapping[str, Any] = field(default_factory=dict)
    prompt: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    step: int | None = None
    completion_messages: list[dict[str, Any]] | None = None
    completion_ids: list[int] | None = None
    conversational: bool | None = None
    trainer_state: Any = None
    state: Any = None
    episode: dict[str, Any] | None = None

    @property
    def prompt_messages(self) -> list[dict[str, Any]]:
        """The prompt as chat messages (a text prompt becomes one user message; a row's
        ``messages`` without a prompt: the messages before the first assistant message)."""
        if isinstance(self.prompt, list):
            return self.prompt
        if self.prompt is None and isinstance(self.item.get("messages"), list):
            msgs = self.item["messages"]
            first = next((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), len(msgs))
            return msgs[:first] or msgs
        return [{"role": "user", "content": self.prompt or ""}]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation: the prompt's messages and the completion's (what a grader
        asking for ``messages`` gets; see :attr:`chat`)."""
        return self.chat

    @property
    def is_trajectory(self) -> bool:
        """True for a multi-turn rollout: the completion has tool calls or tool results as
        messages, or the sample carries an environment's ``state`` or ``episode``."""
        if self.state is not None or self.episode is not None:
            return True
        return any(m.get("role") == "tool" or m.get("tool_calls") for m in self.completion_messages or ())

    # -- what other frameworks' functions receive ---------------------------------
    @property
    def is_conversational(self) -> bool:
        """True when TRL would see this row as conversational (see ``conversational``)."""
        if self.conversational is not None:
            return self.conversational
        return self.completion_messages is not None or isinstance(self.prompt, list)

    @property
    def trl_prompt(self) -> str | list[dict[str, Any]]:
        """The prompt as TRL passes it: chat messages (conversational) or text (standard)."""
        if self.is_conversational:
            return self.prompt_messages
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(str(m.get("content") or "") for m in self.prompt_messages)

    @property
    def trl_completion(self) -> str | list[dict[str, Any]]:
        """The completion as TRL passes it: ``[{"role": "assistant", "content": …}]`` or text."""
        if not self.is_conversational:
            return self.completion
        if self.completion_messages is not None:
            return self.completion_messages
        return [{"role": "assistant", "content": self.completion}]

    @property
    def chat(self) -> list[dict[str, Any]]:
        """The prompt's messages followed by the completion's: the whole conversation.

        Of a single-turn sample the completion is the last (assistant) message, carrying the
        sample's explicit ``tool_calls`` when it has them; of a multi-turn rollout, every
        assistant and tool message in order. What a reward-kit / Eval Protocol function gets
        as ``messages``.
        """
        if self.completion_messages is not None:
            return [*self.prompt_messages, *self.completion_messages]
        reply: dict[str, Any] = {"role": "assistant", "content": self.completion}
        if self.tool_calls:
            reply["tool_calls"] = self.tool_calls
        return [*self.prompt_messages, reply]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Sample, (
            self.completion, self.item, self.prompt, self.tool_calls, self.step,
            self.completion_messages, self.completion_ids, self.conversational, self.trainer_state,
            self.state, self.episode,
        )  # fmt: skip

    def get_tool_calls(self) -> list[dict[str, Any]]:
        """The completion's tool calls as given: the explicit ``tool_calls``, else those of
        ``completion_messages`` (every assistant message in order: its ``tool_calls``, else
        the calls in its text), else the calls parsed from the completion text."""
        if self.tool_calls is not None:
            return self.tool_calls
        from rft.core.parsing import message_tool_calls, parse_tool_calls

        if self.completion_messages is not None and self.is_trajectory:
            return message_tool_calls(self.completion_messages)
        self.tool_calls = parse_tool_calls(self.completion)
        return self.tool_calls

    def resolve(self, name: str) -> Any:
        """The value injected for argument ``name``.

        ``state`` and ``episode`` are the sample's; on a sample without one, a row's column
        of that name (a dataset with a ``state`` column keeps working).

        Raises:
            MissingInputError: ``state`` or ``episode`` of a sample that has none (saying why).
            KeyError: a column the row does not have.
        """
        if name == "completion":
            return self.completion
        if name == "prompt":
            return self.prompt if self.prompt is not None else self.item.get("prompt", self.prompt_messages)
        if name == "messages":
            return self.chat
        if name == "item":
            return self.item
        if name == "tool_calls":
            from rft.core.parsing import normalize_tool_call

            return [c for c in map(normalize_tool_call, self.get_tool_calls()) if c is not None]
        if name == "step":
            return self.step
        if name == "sample":
            return self
        if name in _NO_TRAJECTORY:
            value = getattr(self, name)
            if value is not None:
                return value
            if name in self.item:  # a dataset column of that name, as before trajectories had one
                return self.item[name]
            raise MissingInputError(_NO_TRAJECTORY[name])
        return self.item[name]

    def to_dict(self) -> dict[str, Any]:
        """The sample as JSON-ready data (``trainer_state`` is left out; ``step`` stays)."""
        d: dict[str, Any] = {"completion": self.completion, "item": dict(self.item)}
        for key in _DICT_KEYS:
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            completion=d["completion"],
            item=d.get("item") or {},
            **{key: d.get(key) for key in _DICT_KEYS},
        )


#: The optional fields :meth:`Sample.to_dict` writes when set.
_DICT_KEYS = (
    "prompt",
    "tool_calls",
    "step",
    "completion_messages",
    "completion_ids",
    "conversational",
    "state",
    "episode",
)
