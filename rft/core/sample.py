"""Samples: one completion of one dataset row, as graders see it, and the names injected from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["INJECTED_NAMES", "REWARD_KIT_NAMES", "TRL_NAMES", "Sample"]

#: Argument names filled from the sample rather than from a dataset column.
INJECTED_NAMES = frozenset({"completion", "prompt", "messages", "item", "tool_calls", "step", "sample"})
#: Argument names of TRL-style reward functions ``(prompts, completions, **kwargs)``.
TRL_NAMES = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})
#: Argument names a reward-kit / Eval Protocol function ``(messages, ground_truth=None, **kwargs)``
#: gets from the sample (``ground_truth`` is the row's column of that name, None without one).
REWARD_KIT_NAMES = frozenset({"messages", "ground_truth", "original_messages"})


@dataclass
class Sample:
    """One completion of one dataset row, as graders see it.

    Args:
        completion: the model's output text.
        item: the dataset row (its columns are injectable by name).
        prompt: the prompt as text, or as a list of chat messages.
        tool_calls: tool calls made by the completion (OpenAI shape); parsed from the
            completion text when not given.
        step: the training step, when scored during training.
        completion_messages: the completion as chat messages, exactly as TRL passes a
            conversational completion (``[{"role": "assistant", "content": …}]``); built
            from ``completion`` when None and the sample is conversational.
        completion_ids: the completion's token ids (TRL's ``completion_ids``), when known.
        conversational: whether the row is in TRL's conversational format (TRL-style
            functions then get message lists, else strings); None: conversational when
            ``completion_messages`` is given or the prompt is a list of messages.
        trainer_state: a snapshot of the trainer's state during training (attributes of
            ``transformers.TrainerState`` without ``log_history``); None outside training.
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

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The prompt as chat messages (a text prompt becomes one user message)."""
        if isinstance(self.prompt, list):
            return self.prompt
        if self.prompt is None and isinstance(self.item.get("messages"), list):
            return [m for m in self.item["messages"] if m.get("role") != "assistant"] or self.item["messages"]
        return [{"role": "user", "content": self.prompt or ""}]

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
            return self.messages
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(str(m.get("content") or "") for m in self.messages)

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
        """The prompt's messages followed by the completion as the last (assistant) message.

        What a reward-kit / Eval Protocol function gets as ``messages``; the reply carries
        the sample's explicit ``tool_calls`` when it has them.
        """
        if self.completion_messages is not None:
            return [*self.messages, *self.completion_messages]
        reply: dict[str, Any] = {"role": "assistant", "content": self.completion}
        if self.tool_calls:
            reply["tool_calls"] = self.tool_calls
        return [*self.messages, reply]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Sample, (
            self.completion, self.item, self.prompt, self.tool_calls, self.step,
            self.completion_messages, self.completion_ids, self.conversational, self.trainer_state,
        )  # fmt: skip

    def get_tool_calls(self) -> list[dict[str, Any]]:
        if self.tool_calls is None:
            from rft.core.parsing import parse_tool_calls

            self.tool_calls = parse_tool_calls(self.completion)
        return self.tool_calls

    def resolve(self, name: str) -> Any:
        """The value injected for argument ``name``; raises KeyError when there is none."""
        if name == "completion":
            return self.completion
        if name == "prompt":
            return self.prompt if self.prompt is not None else self.item.get("prompt", self.messages)
        if name == "messages":
            return self.messages
        if name == "item":
            return self.item
        if name == "tool_calls":
            return self.get_tool_calls()
        if name == "step":
            return self.step
        if name == "sample":
            return self
        return self.item[name]

    def to_dict(self) -> dict[str, Any]:
        """The sample as JSON-ready data (``trainer_state`` is left out; ``step`` stays)."""
        d: dict[str, Any] = {"completion": self.completion, "item": dict(self.item)}
        for key in ("prompt", "tool_calls", "step", "completion_messages", "completion_ids", "conversational"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            completion=d["completion"],
            item=d.get("item") or {},
            prompt=d.get("prompt"),
            tool_calls=d.get("tool_calls"),
            step=d.get("step"),
            completion_messages=d.get("completion_messages"),
            completion_ids=d.get("completion_ids"),
            conversational=d.get("conversational"),
        )
