"""The agent example's environment: a shop whose stock and prices the model cannot know.

Every row has its own shop (``shop``: item → {"stock", "price"}), so the only way to answer
"How many pears are in stock?" or "What does a pear cost?" is to call the right tool with the
right item and repeat what it returns. The model sees the two tools' schemas in its prompt
(made from the signatures and docstrings below) and calls them in the chat template's tool
format; rftkit runs them and sends the results back as ``tool`` messages.

Graders (``examples/agent/graders.yaml``): the built-in ``task_success`` reads
:func:`answered` (the final reply states the right number after a tool call returned it),
and ``right_tool`` gives partial credit for calling the right tool with the right item,
so GRPO has a signal on episodes that do not finish.
"""

from __future__ import annotations

import re
from typing import Any

import rft


@rft.tool(timeout=2)
def stock(item: str, state: dict) -> int:
    """How many units of an item the shop has in stock.

    Args:
        item: the item's name, e.g. "pear".
    """
    state["calls"].append(["stock", item])
    return int(state["shop"][item.strip().lower()]["stock"])


@rft.tool(timeout=2)
def price(item: str, state: dict) -> int:
    """The price of one unit of an item, in cents.

    Args:
        item: the item's name, e.g. "pear".
    """
    state["calls"].append(["price", item])
    return int(state["shop"][item.strip().lower()]["price"])


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+", text or "")


def answered(state: dict, messages: list[dict[str, Any]]) -> bool:
    """Success: the right tool was called for the asked item, and the final reply states its value."""
    want = state["shop"][state["product"]][state["ask"]]
    called = [state["ask"], state["product"]] in [[n, i.strip().lower()] for n, i in state["calls"]]
    final = messages[-1] if messages and messages[-1].get("role") == "assistant" else {}
    return called and str(want) in _numbers(str(final.get("content") or ""))


@rft.environment(tools=[stock, price], max_turns=2, success=answered)
def shop(row: dict) -> dict:
    """A shop with its own stock and prices in every row."""
    return {"shop": row["shop"], "product": row["product"], "ask": row["ask"], "calls": []}


@rft.grader
def right_tool(tool_calls: list, product: str, ask: str) -> rft.Grade:
    """Partial credit for the first tool call: 0.5 for the right tool, 0.5 for the right item."""
    if not tool_calls:
        return rft.Grade(0.0, "no tool call")
    fn = tool_calls[0].get("function") or {}
    args = fn.get("arguments") or {}
    score = 0.5 * (fn.get("name") == ask) + 0.5 * (str(args.get("item", "")).strip().lower() == product)
    return rft.Grade(score, f"called {fn.get('name')}({args})")
