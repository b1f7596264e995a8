"""A scripted tool-calling policy for tiny random models (agentic RFT tests).

A tiny random model cannot call tools, so the tests replace its ``generate``: on a prompt
without a tool result it calls a tool named by the question, after a tool result it answers
with what the tool returned, and a guessing game answers wrong once, then right after the
environment's feedback. Everything around it is the real path (TRL's tool loop, episodes,
graders). :func:`install` patches ``LlamaForCausalLM.generate``; a plugin file can call it so
the patch also holds in Ray Train learner processes.
"""

from __future__ import annotations

import re
from typing import Any


def scripted_reply(text: str) -> str:
    """The reply to a rendered conversation ``text``."""
    if "Too low" in text:  # the environment's feedback after a wrong guess
        return "It is 42."
    if "Guess the number" in text:
        return "It is 7."
    results = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text, re.DOTALL)
    if results:
        return f"There are {results[-1]} in stock."
    item = re.findall(r"How many (\w+?)s are|Recount the (\w+?)s", text)[-1]
    name, arg = ("lookup", item[0]) if item[0] else ("recount", item[1])
    return f'<tool_call>\n{{"name": "{name}", "arguments": {{"item": "{arg}"}}}}\n</tool_call>'


_TOKENIZERS: dict[str, Any] = {}


def scripted_generate(self: Any, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
    """``generate`` for a tiny Llama: the scripted reply and an end-of-turn token per row."""
    import torch
    from transformers import AutoTokenizer

    path = self.config._name_or_path
    tok = _TOKENIZERS.get(path) or _TOKENIZERS.setdefault(path, AutoTokenizer.from_pretrained(path))
    replies = []
    for row in input_ids.tolist():
        text = tok.decode([t for t in row if t != tok.pad_token_id], skip_special_tokens=False)
        replies.append(tok(scripted_reply(text), add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    width = max(len(r) for r in replies)
    new = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in replies], device=input_ids.device)
    return torch.cat([input_ids, new], dim=1)


def install() -> None:
    """Replace the tiny Llama's ``generate`` with :func:`scripted_generate` in this process."""
    from transformers import LlamaForCausalLM

    LlamaForCausalLM.generate = scripted_generate  # type: ignore[method-assign]
