"""Graders that misbehave on purpose, loaded as a plugin file by the scoring tests.

The completion text says what to do, so one batch exercises every failure mode:
``boom`` raises, ``hang`` sleeps forever, ``spin`` busy-loops forever, ``die`` kills
its own process, ``nan`` returns NaN; anything else scores ``len(completion) / 10``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import rft


@rft.grader
def unruly(completion: str) -> float:
    """Misbehaves as its completion says (see the module docstring)."""
    if completion == "boom":
        raise ValueError("boom on purpose")
    if completion == "hang":
        time.sleep(3600)
    if completion == "spin":
        while True:
            pass
    if completion == "die":
        os._exit(3)
    if completion == "nan":
        return float("nan")
    return len(completion) / 10


@rft.grader
async def unruly_async(completion: str) -> float:
    """The async twin: ``hang`` awaits forever, ``block`` blocks the event loop with a
    sync sleep, ``boom`` raises, else a short sleep."""
    if completion == "hang":
        await asyncio.sleep(3600)
    if completion == "block":
        time.sleep(3600)
    if completion == "boom":
        raise ValueError("boom on purpose")
    await asyncio.sleep(0.01)
    return len(completion) / 10


@rft.grader(batched=True)
def short_batch(completion: list[str]) -> list[float]:
    """Batched; returns one result too few when any completion is ``short``."""
    scores = [len(c) / 10 for c in completion]
    return scores[:-1] if "short" in completion else scores


@rft.grader
def always_raises(completion: str, answer: str) -> float:
    """Broken on every sample."""
    raise KeyError(f"no such field for {answer!r}")


@rft.grader
def counted(completion: str, log_dir: str = "") -> float:
    """Scores 1.0 and records each call as a file in ``log_dir`` (to count calls across processes)."""
    if log_dir:
        (Path(log_dir) / uuid.uuid4().hex).write_text(completion)
    return 1.0


@rft.grader
def worker_pid(completion: str, work_ms: float = 0.0) -> rft.Grade:
    """Scores 1.0 after ``work_ms`` of sleep; the ``pid`` metric says which process ran it."""
    time.sleep(work_ms / 1000)
    return rft.Grade(1.0, metrics={"pid": float(os.getpid())})


@rft.hookimpl
def rft_register_graders(register):
    for g in (unruly, unruly_async, short_batch, always_raises, counted, worker_pid):
        register(g)
