"""Reading one run directory for the viewer: rollouts by step and GRPO group, metrics, evals.

The files are the ones ``rft train`` writes (see :mod:`rft.train.pipeline`):

- ``rollouts.jsonl``: one scored completion per line, ``{"step", "index", "prompt",
  "completion", "reward", "graders": {id: {"score", "kind", "reason", "error"}}}``
  (:mod:`rft.train.rewards`). ``step`` is the trainer's global step when the batch was
  generated, so the rollouts of step ``s`` produced the rewards logged at step ``s + 1``.
- ``metrics.jsonl``: one record per logged step, ``{"stage", "step", …TRL logs}``.
- ``eval.json``: ``{phase: {"n", "mean_reward", "pass_rate", "graders", "samples"}}`` for the
  phases base, sft and rft (:mod:`rft.train.eval`).
- ``run.json``: model and stage status (``finished`` once the run is done).

A :class:`RunReader` keeps a small summary per rollout line in memory (step, group, reward,
each grader's score and kind) and the line's byte offset; texts stay on disk and are read
back a page at a time, so a run with hundreds of thousands of rollouts is filtered on the
server and sent to the browser in pages. Every read refreshes the indexes first, so a run
that is still training is followed as its files grow. Nothing is ever written.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core import ERROR_KINDS
from rft.core.text import shorten
from rft.view.jsonl import LineIndex

__all__ = ["Filters", "RunReader", "prompt_text"]

_ERROR_KIND_NAMES = frozenset(k.value for k in ERROR_KINDS)
#: Characters of a completion, prompt and reason sent in a page (the full text is one click away).
_PAGE_COMPLETION = 600
_PAGE_PROMPT = 400
_PAGE_REASON = 240
#: Problems (broken lines) remembered per run, to show on the page.
_MAX_PROBLEMS = 20


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string as is, a chat's last user message, else its JSON.

    >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    '2+2?'
    >>> prompt_text("Say hi")
    'Say hi'
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
    return json.dumps(prompt, default=str)


@dataclass(slots=True)
class _Line:
    """What the viewer keeps in memory about one rollout line (small: runs have 100k+ of them)."""

    line: int
    step: int | None
    index: int | None
    group: int
    reward: float | None
    graders: tuple[tuple[str, float | None, str | None], ...]  # (grader id, score, kind), names interned

    def grader(self, name: str) -> tuple[float | None, str | None] | None:
        """The score and kind of grader ``name``, or None when the line has no verdict of it."""
        for gid, score, kind in self.graders:
            if gid == name:
                return score, kind
        return None


@dataclass
class _Group:
    """The completions of one prompt at one step: a GRPO group."""

    id: int
    step: int | None
    lines: list[int] = field(default_factory=list)
    rewards: list[float | None] = field(default_factory=list)

    @property
    def spread(self) -> float | None:
        xs = [r for r in self.rewards if r is not None]
        return (max(xs) - min(xs)) if xs else None

    @property
    def zero_variance(self) -> bool:
        return len(self.rewards) > 1 and self.spread == 0.0 and None not in self.rewards


@dataclass(frozen=True)
class Filters:
    """Which completions a rollouts page shows (a group is shown when one of them matches).

    Attributes:
        step: only this step.
        grader: the grader ``lo``/``hi`` and ``kind`` apply to; None means the combined reward
            for the range and any grader for the kind.
        lo: lowest score (inclusive); a completion without a score does not match a range.
        hi: highest score (inclusive).
        kind: an outcome kind (``score``, ``not_applicable``, ``grader_error``, ``timeout`` …) or
            ``error`` for any error kind.
        zero_variance: only groups whose completions all got the same reward.
        q: text (case-insensitive) in the prompt, the completion or a grader's reason or error.
    """

    step: int | None = None
    grader: str | None = None
    lo: float | None = None
    hi: float | None = None
    kind: str | None = None
    zero_variance: bool = False
    q: str | None = None

    def matches(self, s: _Line) -> bool:
        """Whether one completion passes every filter except ``q`` and ``zero_variance``."""
        if self.step is not None and s.step != self.step:
            return False
        if self.lo is not None or self.hi is not None:
            if self.grader is None:
                value = s.reward
            else:
                verdict = s.grader(self.grader)
                value = verdict[0] if verdict is not None else None
            if value is None or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                return False
        if self.kind:
            if self.grader is not None:
                verdict = s.grader(self.grader)
                kinds = [verdict[1]] if verdict is not None else []
            else:
                kinds = [k for _, _, k in s.graders]
            wanted = _ERROR_KIND_NAMES if self.kind == "error" else {self.kind}
            if not any(k in wanted for k in kinds):
                return False
        elif self.grader is not None and s.grader(self.grader) is None:
            return False
        return True


class RunReader:
    """One run directory, read incrementally and only read.

    Args:
        root: the run directory (``output_dir`` of ``rft train``).
        run_id: how the API names it (its position on the command line).
    """

    def __init__(self, root: str | Path, run_id: int = 0):
        self.root = Path(root)
        self.id = run_id
        self.name = self.root.name  # create_app makes names unique among the runs shown
        self.rollouts = LineIndex(self.root / "rollouts.jsonl")
        self.metrics = LineIndex(self.root / "metrics.jsonl")
        self.problems: list[str] = []
        self._lock = threading.RLock()
        self._lines: list[_Line | None] = []
        self._groups: list[_Group] = []
        self._group_of: dict[tuple[int | None, str], int] = {}
        self._graders: dict[str, None] = {}  # ordered set
        self._metric_records: list[dict[str, Any]] = []
        self._search_cache: tuple[tuple[str, int, int], set[int]] | None = None

    # -- refreshing -----------------------------------------------------------------
    def refresh(self) -> None:
        """Read what was appended to the run's files since the last call."""
        with self._lock:
            gen = self.rollouts.generation
            new = self.rollouts.refresh()
            if self.rollouts.generation != gen:
                self._lines, self._groups, self._group_of = [], [], {}
                self._search_cache = None
            for nl in new:
                self._note(nl.problem)
                self._lines.append(self._summarize(nl.number, nl.record) if nl.record is not None else None)
            gen = self.metrics.generation
            new = self.metrics.refresh()
            if self.metrics.generation != gen:
                self._metric_records = []
            for nl in new:
                self._note(nl.problem)
                if nl.record is not None:
                    self._metric_records.append(nl.record)

    def _note(self, problem: str | None) -> None:
        if problem and len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)

    def _summarize(self, number: int, rec: dict[str, Any]) -> _Line:
        step = rec.get("step")
        step = step if isinstance(step, int) else None
        key = (step, hashlib.sha1(json.dumps(rec.get("prompt"), sort_keys=True, default=str).encode()).hexdigest())
        gid = self._group_of.get(key)
        if gid is None:
            gid = self._group_of[key] = len(self._groups)
            self._groups.append(_Group(gid, step))
        reward = _number(rec.get("reward"))
        group = self._groups[gid]
        group.lines.append(number)
        group.rewards.append(reward)
        graders = []
        per = rec.get("graders")
        if isinstance(per, dict):
            for name, o in per.items():
                name = sys.intern(str(name))
                self._graders.setdefault(name, None)
                if isinstance(o, dict):
                    kind = o.get("kind")
                    graders.append((name, _number(o.get("score")), sys.intern(kind) if isinstance(kind, str) else None))
        index = rec.get("index")
        return _Line(number, step, index if isinstance(index, int) else None, gid, reward, tuple(graders))

    # -- what the page asks -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Name, path, stage status, graders and file sizes (the ``/api/runs`` entry)."""
        self.refresh()
        run = _read_json(self.root / "run.json")
        ev = self.eval_data()
        graders = list(self._graders)
        for phase in ev.values():
            if isinstance(phase, dict):
                for g in phase.get("graders") or {}:
                    if g not in graders:
                        graders.append(g)
        return {
            "id": self.id,
            "name": self.name,
            "path": str(self.root),
            "model": (run.get("model") or {}).get("name") if isinstance(run, dict) else None,
            "stages": run.get("stages") if isinstance(run, dict) else None,
            "finished": bool(isinstance(run, dict) and run.get("finished")),
            "graders": graders,
            "files": {
                name: (self.root / name).is_file()
                for name in ("run.json", "metrics.jsonl", "rollouts.jsonl", "eval.json", "report.md")
            },
        }

    def status(self) -> dict[str, Any]:
        """Counters that change when the run's files change (the page polls this)."""
        self.refresh()
        run = _read_json(self.root / "run.json")
        return {
            "id": self.id,
            "rollout_lines": len(self.rollouts),
            "rollouts_generation": self.rollouts.generation,
            "metrics_lines": len(self.metrics),
            "metrics_generation": self.metrics.generation,
            "eval_mtime": _mtime(self.root / "eval.json"),
            "finished": bool(isinstance(run, dict) and run.get("finished")),
            "problems": list(self.problems),
        }

    def steps(self) -> list[dict[str, Any]]:
        """Per rollout step: completions, groups, mean reward, zero-variance groups."""
        self.refresh()
        with self._lock:
            out: dict[int | None, dict[str, Any]] = {}
            for g in self._groups:
                s = out.setdefault(
                    g.step, {"step": g.step, "completions": 0, "groups": 0, "zero_variance": 0, "_r": []}
                )
                s["completions"] += len(g.lines)
                s["groups"] += 1
                s["zero_variance"] += int(g.zero_variance)
                s["_r"].extend(r for r in g.rewards if r is not None)
            result = []
            for s in sorted(out.values(), key=lambda s: (s["step"] is None, s["step"] or 0)):
                rs = s.pop("_r")
                s["mean_reward"] = math.fsum(rs) / len(rs) if rs else None
                s["logged_step"] = None if s["step"] is None else s["step"] + 1
                result.append(s)
            return result

    def groups(self, filters: Filters, *, offset: int = 0, limit: int = 20, sort: str = "step") -> dict[str, Any]:
        """One page of the GRPO groups that hold a completion matching ``filters``.

        Args:
            offset: groups to skip (of those that match).
            limit: groups to return.
            sort: ``step`` (oldest first), ``-step`` (newest first) or ``spread`` (widest reward
                spread first).

        Returns:
            ``{"total", "offset", "groups": [...], "lines"}``; each group carries all its
            completions, those matching the filters flagged ``match``.
        """
        if sort not in ("step", "-step", "spread"):
            raise ValueError(f"sort must be step, -step or spread, not {sort!r}")
        self.refresh()
        with self._lock:
            if filters.grader is not None and filters.grader not in self._graders:
                raise KeyError(
                    f"no grader {filters.grader!r} in this run's rollouts; it has {', '.join(self._graders) or 'none'}"
                )
            text_hits = self._search(filters.q) if filters.q else None
            matched: dict[int, set[int]] = {}
            for s in self._lines:
                if s is None or not filters.matches(s):
                    continue
                if text_hits is not None and s.line not in text_hits:
                    continue
                matched.setdefault(s.group, set()).add(s.line)
            chosen = [self._groups[g] for g in matched]
            if filters.zero_variance:
                chosen = [g for g in chosen if g.zero_variance]
            if sort == "-step":
                chosen.sort(key=lambda g: (-(g.step or 0), g.id))
            elif sort == "spread":
                chosen.sort(key=lambda g: (-(g.spread or 0.0), g.id))
            else:
                chosen.sort(key=lambda g: (g.step or 0, g.id))
            page = chosen[offset : offset + max(0, limit)]
            records = self.rollouts.read_many([n for g in page for n in g.lines]) if page else {}
            return {
                "total": len(chosen),
                "offset": offset,
                "lines": len(self.rollouts),
                "groups": [self._group_json(g, records, matched[g.id]) for g in page],
            }

    def _group_json(self, g: _Group, records: dict[int, dict[str, Any] | None], hits: set[int]) -> dict[str, Any]:
        rewards = [r for r in g.rewards if r is not None]
        mean = math.fsum(rewards) / len(rewards) if rewards else None
        first = next((records[n] for n in g.lines if records.get(n)), None) or {}
        return {
            "id": g.id,
            "step": g.step,
            "prompt": shorten(prompt_text(first.get("prompt")), _PAGE_PROMPT),
            "n": len(g.lines),
            "mean_reward": mean,
            "std_reward": math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / len(rewards))
            if mean is not None
            else None,
            "spread": g.spread,
            "zero_variance": g.zero_variance,
            "completions": [self._completion_json(n, records.get(n), n in hits) for n in g.lines],
        }

    @staticmethod
    def _completion_json(line: int, rec: dict[str, Any] | None, match: bool) -> dict[str, Any]:
        rec = rec or {}
        graders = {}
        for gid, o in (rec.get("graders") or {}).items():
            if not isinstance(o, dict):
                continue
            graders[gid] = {
                "score": o.get("score"),
                "kind": o.get("kind"),
                "reason": shorten(o["reason"], _PAGE_REASON) if o.get("reason") is not None else None,
                "error": shorten(o["error"], _PAGE_REASON) if o.get("error") is not None else None,
            }
        completion = rec.get("completion")
        text = completion if isinstance(completion, str) else json.dumps(completion, default=str)
        if rec.get("episode") and isinstance(rec.get("completion_messages"), list):
            text = trajectory_text(rec["completion_messages"])  # an agent's episode: its calls, results, answer
        return {
            "line": line,
            "index": rec.get("index"),
            "completion": text if len(text) <= _PAGE_COMPLETION else text[: _PAGE_COMPLETION - 1] + "…",
            "truncated": len(text) > _PAGE_COMPLETION,
            "reward": rec.get("reward"),
            "graders": graders,
            "match": match,
        }

    def rollout(self, line: int) -> dict[str, Any]:
        """One rollout line in full, with the line numbers of its group.

        Raises:
            KeyError: no such line, or the line is not a readable record.
        """
        self.refresh()
        with self._lock:
            if not 0 <= line < len(self._lines) or self._lines[line] is None:
                raise KeyError(f"rollouts.jsonl of {self.root} has no readable line {line + 1}")
            rec = self.rollouts.read(line)
            if rec is None:
                raise KeyError(f"rollouts.jsonl of {self.root}: line {line + 1} is not a JSON object")
            group = self._groups[self._lines[line].group]  # type: ignore[union-attr]  # None excluded above
            return {"line": line, "record": rec, "group": list(group.lines)}

    def _search(self, q: str) -> set[int]:
        """Lines whose prompt, completion, reasons or errors contain ``q`` (case-insensitive)."""
        key = (q, self.rollouts.end, self.rollouts.generation)
        if self._search_cache is not None and self._search_cache[0] == key:
            return self._search_cache[1]
        needle = q.lower()
        # Candidates: the raw text or its JSON-escaped form anywhere on the line (fast, in C) …
        forms = {q, json.dumps(q)[1:-1]}
        pattern = re.compile(b"|".join(re.escape(f.encode()) for f in forms), re.IGNORECASE)
        candidates: set[int] = set()
        end = self.rollouts.end
        if end and self.rollouts.path.stat().st_size >= end:  # (a file truncated since the refresh: no hits now)
            with self.rollouts.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                pos = 0
                while True:
                    m = pattern.search(mm, pos, end)
                    if m is None:
                        break
                    n = self.rollouts.line_of(m.start())
                    candidates.add(n)
                    pos = self.rollouts.offsets[n + 1] if n + 1 < len(self.rollouts) else end
        # … then checked against the fields a user means (not keys or numbers).
        hits = set()
        for n, rec in self.rollouts.read_many(sorted(candidates)).items():
            if rec is not None and any(needle in t.lower() for t in _texts(rec)):
                hits.add(n)
        self._search_cache = (key, hits)
        return hits

    # -- metrics and evals ------------------------------------------------------
    def metric_records(self, start: int = 0) -> dict[str, Any]:
        """The records of ``metrics.jsonl`` from record ``start`` on, with the file's generation."""
        self.refresh()
        with self._lock:
            return {
                "generation": self.metrics.generation,
                "start": start,
                "records": self._metric_records[start:],
            }

    def eval_data(self) -> dict[str, Any]:
        """``eval.json`` as written, or ``{}`` while there is none."""
        data = _read_json(self.root / "eval.json")
        return data if isinstance(data, dict) else {}

    def eval_compare(self) -> dict[str, Any]:
        """The phases side by side: a summary per phase and per held-out sample.

        ``rows[i]`` pairs the i-th kept sample of every phase (each phase evaluates the same
        held-out rows in the same order). ``change`` is the last phase's reward minus the
        first's; ``regressed`` is True when it is negative.
        """
        ev = self.eval_data()
        phases = [p for p, v in ev.items() if isinstance(v, dict)]
        summary = {p: {k: ev[p].get(k) for k in ("n", "mean_reward", "pass_rate", "graders")} for p in phases}
        n = max((len(ev[p].get("samples") or []) for p in phases), default=0)
        rows = []
        for i in range(n):
            per: dict[str, Any] = {}
            prompt = None
            source = None
            for p in phases:
                samples = ev[p].get("samples") or []
                if i < len(samples) and isinstance(samples[i], dict):
                    s = samples[i]
                    prompt = prompt if prompt is not None else s.get("prompt")
                    source = source if source is not None else s.get("row")
                    per[p] = {
                        "completion": s.get("completion"),
                        "reward": s.get("reward"),
                        "scores": s.get("scores") or {},
                    }
            rewards = [per[p]["reward"] for p in phases if p in per and isinstance(per[p]["reward"], (int, float))]
            change = rewards[-1] - rewards[0] if len(rewards) >= 2 else None
            rows.append(
                {
                    "row": i,
                    "source": source,  # file:line of the held-out row (runs before it was recorded: None)
                    "prompt": prompt if isinstance(prompt, str) else prompt_text(prompt),
                    "phases": per,
                    "change": change,
                    "regressed": change is not None and change < 0,
                    "completion_changed": len({per[p]["completion"] for p in per}) > 1,
                }
            )
        return {"phases": phases, "summary": summary, "rows": rows}


def _texts(rec: dict[str, Any]) -> Iterable[str]:
    yield prompt_text(rec.get("prompt"))
    c = rec.get("completion")
    yield c if isinstance(c, str) else json.dumps(c, default=str)
    for o in (rec.get("graders") or {}).values():
        if isinstance(o, dict):
            for k in ("reason", "error"):
                if isinstance(o.get(k), str):
                    yield o[k]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _read_json(path: Path) -> Any:
    """A JSON file's value; None when it is missing or half-written (``rft train`` replaces it atomically)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def trajectory_text(messages: list[Any]) -> str:
    """A multi-turn episode as one line of text: each tool call, its result, the answer.

    >>> trajectory_text([{"role": "assistant", "content": "", "tool_calls": [
    ...     {"type": "function", "function": {"name": "stock", "arguments": {"item": "pear"}}}]},
    ...     {"role": "tool", "content": "47"}, {"role": "assistant", "content": "47 pears."}])
    "stock(item='pear') → [tool] 47 → 47 pears."
    """
    parts: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        if m.get("role") == "tool":
            parts.append(f"[tool] {m.get('content')}")
            continue
        for tc in m.get("tool_calls") or []:
            fn = (tc or {}).get("function") or {}
            args = fn.get("arguments")
            shown = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) else str(args or "")
            parts.append(f"{fn.get('name')}({shown})")
        if m.get("content"):
            parts.append(str(m["content"]))
    return " → ".join(parts)
