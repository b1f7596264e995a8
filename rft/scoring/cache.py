"""The result cache: identical (grader identity, inputs) are scored once per run.

GRPO samples several completions per prompt and they often coincide; a model judge
costs money per call. The key is a digest of the grader's :attr:`~rft.Grader.identity`
(plugin, name, version, parameters) and the inputs that grader receives for the
sample — only the inputs it asks for, so a grader that reads ``completion`` and
``answer`` hits the cache when those two agree even if other columns differ.

Only successful outcomes (``score`` and ``not_applicable``) are stored: an exception,
a timeout or a lost worker may be transient, so a duplicate of a failed sample is
graded again rather than inheriting the failure.

A group grader's key covers the whole group: the inputs of every completion of the
group, in order, and the completion's position in it (:meth:`ResultCache.group_keys`),
so a group is a hit only when the same group was scored before.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from rft.core import Grader, Outcome, Sample

__all__ = ["ResultCache", "cache_key", "grader_inputs", "group_cache_keys"]


def grader_inputs(grader: Grader, sample: Sample) -> dict[str, Any]:
    """The inputs ``grader`` receives for ``sample`` (bound parameters excluded).

    >>> import rft
    >>> g = rft.grader(lambda completion, answer: 1.0, name="g")
    >>> grader_inputs(g, Sample("4", {"answer": "4", "id": 7}))
    {'completion': '4', 'answer': '4'}
    """
    return grader.call_inputs(sample)


def _default(o: Any) -> Any:
    if isinstance(o, Sample):
        return o.to_dict()
    if is_dataclass(o) and not isinstance(o, type):
        return asdict(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    raise TypeError(f"cannot hash {type(o).__name__}")


def cache_key(identity: str, grader: Grader, sample: Sample) -> str | None:
    """A digest of (identity, inputs); None when the inputs cannot be serialised."""
    try:
        blob = json.dumps(grader_inputs(grader, sample), sort_keys=True, default=_default, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(f"{identity}\0{blob}".encode(), digest_size=16).hexdigest()


def group_cache_keys(identity: str, grader: Grader, samples: Sequence[Sample]) -> list[str | None]:
    """One key per completion of one group: a digest of (identity, every member's inputs
    in order, the member's position); all None when the inputs cannot be serialised."""
    try:
        blob = json.dumps(
            [grader_inputs(grader, s) for s in samples], sort_keys=True, default=_default, ensure_ascii=False
        )
    except (TypeError, ValueError):
        return [None] * len(samples)
    base = hashlib.blake2b(f"{identity}\0group\0{blob}".encode(), digest_size=16).hexdigest()
    return [f"{base}:{pos}" for pos in range(len(samples))]


class ResultCache:
    """A bounded LRU map from cache keys to outcomes, safe to share between threads.

    Args:
        max_entries: entries kept; the least recently used are dropped beyond it.

    >>> from rft.core import OutcomeKind
    >>> c = ResultCache(max_entries=1)
    >>> c.put("k", Outcome(OutcomeKind.SCORE, score=1.0))
    >>> c.get("k").cached, c.get("missing")
    (True, None)
    """

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._data: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self._identities: dict[int, str] = {}

    def identity(self, grader: Grader) -> str:
        """``grader.identity``, computed once per grader object (it reads source code)."""
        key = id(grader)
        ident = self._identities.get(key)
        if ident is None:
            ident = self._identities[key] = grader.identity
        return ident

    def keys(self, grader: Grader, samples: Sequence[Sample]) -> list[str | None]:
        ident = self.identity(grader)
        return [cache_key(ident, grader, s) for s in samples]

    def group_keys(
        self, grader: Grader, samples: Sequence[Sample], groups: Sequence[Sequence[int]]
    ) -> list[str | None]:
        """Keys of a group grader for every sample of a batch (see :func:`group_cache_keys`).

        Args:
            grader: the group grader.
            samples: the batch.
            groups: the indices of each group's samples in the batch.
        """
        ident = self.identity(grader)
        keys: list[str | None] = [None] * len(samples)
        for g in groups:
            for i, key in zip(g, group_cache_keys(ident, grader, [samples[i] for i in g])):
                keys[i] = key
        return keys

    def get(self, key: str | None) -> Outcome | None:
        """A copy of the stored outcome marked ``cached``, or None."""
        if key is None:
            return None
        with self._lock:
            out = self._data.get(key)
            if out is None:
                return None
            self._data.move_to_end(key)
        hit = copy.copy(out)
        hit.metrics = dict(out.metrics)
        hit.cached = True
        return hit

    def put(self, key: str | None, outcome: Outcome) -> None:
        """Store a successful outcome; error outcomes are never stored."""
        if key is None or outcome.kind.is_error:
            return
        stored = copy.copy(outcome)
        stored.metrics = dict(outcome.metrics)
        with self._lock:
            self._data[key] = stored
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
