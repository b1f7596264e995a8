"""The ``transformers`` backend of the model judges: a local Hugging Face model that
compares the log-probabilities of the candidate answers (each score, or each label).

One :class:`LocalJudgeModel` per model folder and process, loaded on first use and shared by
every judge on that model; judgments awaited together are batched into one forward pass
per ``batch_size`` rows. torch and transformers are imported only when a model loads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

from rft.core.errors import GraderFailure
from rft.judges.client import run_on_client_loop

logger = logging.getLogger(__name__)

__all__ = ["LocalJudgeModel", "local_model"]


def _flat_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))


_models_lock = threading.Lock()
_models: dict[tuple[str, str | None, int], LocalJudgeModel] = {}


def local_model(path: str, device: str | None, batch_size: int) -> LocalJudgeModel:
    """The process's :class:`LocalJudgeModel` for ``path`` (loaded on first use, shared by
    every judge on that model; the largest ``batch_size`` asked for wins)."""
    key = (os.path.abspath(path), device, os.getpid())
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = LocalJudgeModel(key[0], device, batch_size)
        model.batch_size = max(model.batch_size, batch_size)
        return model


class LocalJudgeModel:
    """A local causal LM scoring candidate answers, shared by the judges of a process.

    Judgments awaited together are gathered into batches (on the client loop) and
    scored in one forward pass per ``batch_size`` rows, in a worker thread.
    """

    def __init__(self, path: str, device: str | None, batch_size: int, wait_s: float = 0.005):
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.wait_s = wait_s
        self._model: Any = None
        self._tokenizer: Any = None
        self._queue: list[tuple[list[dict[str, Any]], list[str], asyncio.Future[list[float]]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.forward_passes = 0

    async def probabilities(self, messages: list[dict[str, Any]], candidates: list[str]) -> list[float]:
        """The probability of each candidate as the reply to ``messages`` (normalized)."""
        return await run_on_client_loop(self._submit(messages, candidates))

    async def _submit(self, messages: list[dict[str, Any]], candidates: list[str]) -> list[float]:
        fut: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._queue.append((messages, candidates, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        return await fut

    async def _run(self) -> None:
        await asyncio.sleep(self.wait_s)  # let judgments awaited together join this batch
        while self._queue:
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            try:
                results = await asyncio.to_thread(self._score, [(m, c) for m, c, _ in batch])
            except Exception as err:  # noqa: BLE001 - handed to every waiting judgment
                wrapped = GraderFailure(f"local judge {self.path}: {type(err).__name__}: {err}")
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(wrapped)
                continue
            for (_, _, fut), probs in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(probs)

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        logger.info("loading local judge %s on %s", self.path, device)
        self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        model: Any = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype)
        self._model = model.to(device).eval()
        self.device = device

    def _prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        tok = self._tokenizer
        flat = [{"role": m["role"], "content": _flat_text(m["content"])} for m in messages]
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(flat, add_generation_prompt=True, tokenize=False)
        else:
            text = "\n\n".join(m["content"] for m in flat) + "\n\nAnswer: "
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def _score(self, requests: list[tuple[list[dict[str, Any]], list[str]]]) -> list[list[float]]:
        import torch

        self._load()
        tok, model = self._tokenizer, self._model
        limit = getattr(model.config, "max_position_embeddings", None)
        rows: list[tuple[int, list[int], int]] = []  # (request index, ids, prompt length)
        for r, (messages, candidates) in enumerate(requests):
            prompt = self._prompt_ids(messages)
            for cand in candidates:
                ids = prompt + list(tok(cand, add_special_tokens=False)["input_ids"])
                if limit is not None and len(ids) > limit:
                    raise ValueError(f"the judge prompt has {len(ids)} tokens; the model allows {limit}")
                rows.append((r, ids, len(prompt)))
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        logps: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                width = max(len(ids) for _, ids, _ in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, (_, ids, _) in enumerate(chunk):
                    input_ids[i, : len(ids)] = torch.tensor(ids)
                    mask[i, : len(ids)] = 1
                logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
                self.forward_passes += 1
                for i, (_, ids, plen) in enumerate(chunk):
                    targets = torch.tensor(ids[plen:])
                    positions = torch.arange(plen - 1, len(ids) - 1)
                    logps.append(float(logprobs[i, positions, targets].sum()))
        out: list[list[float]] = [[] for _ in requests]
        for (r, _, _), lp in zip(rows, logps, strict=True):
            out[r].append(lp)
        return [_softmax(v) for v in out]


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]
