"""Samples: one completion of one dataset row, as graders see it, and the names injected from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["INJECTED_NAMES", "TRL_NAMES", "Sample"]

#: Argument names filled from the sample rather than from a dataset column.
INJECTED_NAMES = frozenset({"completion", "prompt", "messages", "item", "tool_calls", "step", "sample"})
#: Argument names of TRL-style reward functions ``(prompts, completions, **kwargs)``.
TRL_NAMES = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})


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
    """

    completion: str
    item: Mapping[str, Any] = field(default_factory=dict)
    prompt: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    step: int | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The prompt as chat messages (a text prompt becomes one user message)."""
        if isinstance(self.prompt, list):
            return self.prompt
        if self.prompt is None and isinstance(self.item.get("messages"), list):
            return [m for m in self.item["messages"] if m.get("role") != "assistant"] or self.item["messages"]
        return [{"role": "user", "content": self.prompt or ""}]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Sample, (self.completion, self.item, self.prompt, self.tool_calls, self.step)

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
        d: dict[str, Any] = {"completion": self.completion, "item": dict(self.item)}
        if self.prompt is not None:
            d["prompt"] = self.prompt
        if self.tool_calls is not None:
            d["tool_calls"] = self.tool_calls
        if self.step is not None:
            d["step"] = self.step
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            completion=d["completion"],
            item=d.get("item") or {},
            prompt=d.get("prompt"),
            tool_calls=d.get("tool_calls"),
            step=d.get("step"),
        )
