"""A chat template that renders tools, for models whose own template does not.

Multi-turn tool use needs a template that renders the tool schemas, the assistant's tool
calls and the ``tool`` messages, and a parser for the model's replies. TRL checks both
(``supports_tool_calling``) and knows parsers for the templates of its supported models.
SmolLM2's template renders none of it; it is ChatML (``<|im_start|>role … <|im_end|>``), so
:func:`ensure_tool_template` gives such a tokenizer :data:`CHATML_TOOLS` — Qwen2.5's
ChatML tool format (tools in ``<tools>``, calls as JSON in ``<tool_call>``, results in
``<tool_response>``) with a neutral default system message and a short tool header (each
tool's name, description and parameters; about 100 prompt tokens fewer than Qwen's, which
matters on a CPU) — and TRL's parser for that format (its ``qwen3_template`` response
template).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rft.core.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["CHATML_TOOLS", "TOOL_TEMPLATE_CHOICES", "ensure_tool_template"]

#: ``environment.chat_template`` values besides a path to a ``.jinja`` file.
TOOL_TEMPLATE_CHOICES = ("auto", "model", "chatml")

#: Qwen2.5's ChatML tool format, short header; a string ``arguments`` (OpenAI's stored form) is kept as is.
CHATML_TOOLS = (
    "{%- set default_system = 'You are a helpful assistant.' %}"
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- default_system }}{%- endif %}"
    '{{- "\\n\\n# Tools\\nTo call a tool, reply with <tool_call>\\n{\\"name\\": <tool name>, \\"arguments\\": '
    '<JSON object>}\\n</tool_call>\\n<tools>" }}'
    "{%- for tool in tools %}{%- set fn = tool.function if tool.function is defined else tool %}"
    '{{- "\\n" }}{{- {"name": fn.name, "description": fn.description, "parameters": fn.parameters} | tojson }}'
    "{%- endfor %}"
    '{{- "\\n</tools><|im_end|>\\n" }}'
    "{%- else %}"
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}"
    "{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _is_chatml(tokenizer: Any) -> bool:
    template = tokenizer.chat_template
    return isinstance(template, str) and "<|im_start|>" in template and "<|im_end|>" in template


def ensure_tool_template(tokenizer: Any, setting: str = "auto") -> str:
    """Make ``tokenizer`` render and parse tool calls; returns which template it now uses.

    Args:
        tokenizer: a Hugging Face tokenizer (changed in place).
        setting: ``auto`` — the model's own template when TRL can use it for tools, else
            :data:`CHATML_TOOLS` for a ChatML model; ``model`` — the model's own, or an error;
            ``chatml`` — :data:`CHATML_TOOLS`; or a path to a ``.jinja`` file (its parser
            must then be known to TRL or set on the tokenizer).

    Raises:
        ConfigError: the template cannot render tools and no replacement fits; the
            message names ``environment.chat_template`` and the choices.
    """
    from trl.chat_template_utils import add_response_schema, qwen3_template, supports_tool_calling

    def has_parser() -> bool:
        return (
            getattr(tokenizer, "response_template", None) is not None
            or getattr(tokenizer, "response_schema", None) is not None
        )

    def use_chatml() -> str:
        if not _is_chatml(tokenizer):
            raise ConfigError(
                "environment.chat_template: chatml needs a ChatML model (<|im_start|>/<|im_end|> tokens); "
                "this model's template is not ChatML. Give a .jinja file that renders tools instead"
            )
        tokenizer.chat_template = CHATML_TOOLS
        tokenizer.response_template = qwen3_template
        return "chatml"

    if setting == "chatml":
        return use_chatml()
    if setting not in TOOL_TEMPLATE_CHOICES:
        path = Path(setting)
        if not path.is_file():
            raise ConfigError(
                f"environment.chat_template: {setting!r} is neither one of {list(TOOL_TEMPLATE_CHOICES)} "
                "nor a .jinja file"
            )
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    if supports_tool_calling(tokenizer):
        if not has_parser():
            try:
                add_response_schema(tokenizer)
            except ValueError as err:
                if setting == "auto" and _is_chatml(tokenizer):
                    return use_chatml()
                raise ConfigError(
                    f"environment.chat_template: the template renders tools but TRL has no parser for its tool "
                    f"calls ({err}); use `chatml` for a ChatML model, or set tokenizer.response_template"
                ) from err
        return "model" if setting in ("auto", "model") else str(setting)
    if setting == "auto" and _is_chatml(tokenizer):
        logger.info("the model's chat template does not render tools; using ChatML with tools (Qwen2.5's format)")
        return use_chatml()
    raise ConfigError(
        "environment.chat_template: the model's chat template cannot render tool calls and tool messages; "
        "set it to `chatml` (ChatML models) or to a .jinja file that renders tools"
    )
