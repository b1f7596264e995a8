"""Test helpers for grader authors: a contract check to call from your own tests.

In a plugin's test suite (the grader must live in an importable module, so that it
pickles by reference)::

    from rft.testing import check_grader
    from my_plugin import exact

    def test_exact_keeps_the_contract():
        outcomes = check_grader(exact, [{"completion": "4", "answer": "4"},
                                        {"completion": "5", "answer": "4"}])
        assert [o.score for o in outcomes] == [1.0, 0.0]

>>> from graders.strings import exact_match
>>> samples = [{"completion": "4", "answer": "4"}, {"completion": "5", "answer": "4"}]
>>> [o.score for o in check_grader(exact_match, samples)]
[1.0, 0.0]
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rft.core import Grader, Outcome, Sample, as_grader

__all__ = ["check_grader", "GraderContractError", "as_samples"]


class GraderContractError(AssertionError):
    """A grader breaks the contract rftkit relies on; ``problems`` lists every breach.

    An ``AssertionError`` so that pytest shows it as a test failure.
    """

    def __init__(self, grader: str, problems: Sequence[str]):
        self.grader = grader
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"grader {grader!r} breaks the grader contract ({len(self.problems)} problems):\n{lines}")


def as_samples(samples: Iterable[Sample | Mapping[str, Any]]) -> list[Sample]:
    """Samples from :class:`rft.Sample` objects or dicts.

    A dict is either a sample (``{"completion": …, "item": {…}}``) or a flat row whose
    ``completion`` key is the completion and whose other keys are the columns.
    """
    out: list[Sample] = []
    for i, s in enumerate(samples):
        if isinstance(s, Sample):
            out.append(s)
        elif isinstance(s, Mapping):
            if "completion" not in s:
                raise ValueError(f"samples[{i}] has no 'completion' key: {dict(s)!r}")
            if "item" in s and isinstance(s["item"], Mapping):
                out.append(Sample.from_dict(s))
            else:
                row = {k: v for k, v in s.items() if k != "completion"}
                out.append(Sample(completion=s["completion"], item=row, prompt=row.get("prompt")))
        else:
            raise TypeError(f"samples[{i}] must be an rft.Sample or a dict, got {type(s).__name__}")
    return out


def _key(outcomes: Sequence[Outcome]) -> list[tuple[str, float | None, str | None, dict[str, float]]]:
    return [(o.kind.value, o.score, o.reason, dict(o.metrics)) for o in outcomes]


def check_grader(
    grader: Any,
    samples: Iterable[Sample | Mapping[str, Any]],
    *,
    params: Mapping[str, Any] | None = None,
    allow_errors: bool = False,
    repeats: int = 2,
) -> list[Outcome]:
    """Check that a grader keeps the contract rftkit relies on, and return its outcomes.

    Checks, on every sample:

    1. every input the grader asks for resolves from the sample (column names);
    2. what it returns is valid (a number, bool, ``None`` or :class:`rft.Grade`; no
       NaN, inf, or score outside its declared range), via
       :func:`rft.core.coerce_result`; it does not raise (unless ``allow_errors``);
    3. it survives a pickle round trip (Ray ships graders to workers) and the copy
       gives the same results;
    4. it is deterministic: calling it again gives the same results.

    Args:
        grader: a grader (``@rft.grader`` function or class instance), a decorated class
            (instantiated with ``params``), or a plain callable / TRL reward function.
        samples: :class:`rft.Sample` objects or dicts (see :func:`as_samples`).
        params: parameters for a grader class.
        allow_errors: accept samples on which the grader raises (e.g. a test that
            a bad row fails loudly); the other checks still apply.
        repeats: how many times to call it for the determinism check.

    Returns:
        The outcomes of the first call, one per sample.

    Raises:
        GraderContractError: listing every problem found (an ``AssertionError``).
    """
    g: Grader = as_grader(grader, params=params) if params or not isinstance(grader, Grader) else grader
    samples = as_samples(samples)
    if not samples:
        raise ValueError("check_grader needs at least one sample")
    problems: list[str] = []

    for i, s in enumerate(samples):
        missing = g.missing_columns(s.item.keys())
        if missing:
            problems.append(
                f"sample {i}: input {missing[0]!r} does not resolve: the row has {sorted(s.item) or 'no columns'}"
            )
        elif not g.trl_style:
            try:
                g.kwargs_for(s)
            except KeyError as err:
                problems.append(f"sample {i}: {err.args[0] if err.args else err}")
    if not problems and g.batched:
        try:
            g.batch_kwargs(samples)
        except KeyError as err:
            problems.append(f"batch: {err.args[0] if err.args else err}")
    if problems:  # the calls below would only repeat these
        raise GraderContractError(g.name, problems)

    first = g.grade(samples)
    for i, out in enumerate(first):
        if out.kind.value == "invalid_output":
            problems.append(f"sample {i}: invalid return value: {out.error}")
        elif out.kind.is_error and not allow_errors:
            last = (out.traceback or "").strip().splitlines()[-1:] or [""]
            problems.append(
                f"sample {i}: {out.error}" + (f" ({last[0]})" if last[0] and last[0] not in (out.error or "") else "")
            )

    try:
        copy = pickle.loads(pickle.dumps(g))
    except Exception as err:  # any pickling failure is the finding we report
        problems.append(
            f"not picklable ({type(err).__name__}: {err}); graders with parameters must be module-level "
            "classes, not closures or lambdas, because Ray ships them to worker processes"
        )
    else:
        again = copy.grade(samples)
        for i, (a, b) in enumerate(zip(_key(first), _key(again))):
            if a != b:
                problems.append(f"sample {i}: the unpickled copy gives {b[:2]}, the original {a[:2]}")
                break

    for _ in range(max(repeats - 1, 0)):
        again = g.grade(samples)
        for i, (a, b) in enumerate(zip(_key(first), _key(again))):
            if a != b:
                problems.append(f"sample {i}: not deterministic: {a[:2]} then {b[:2]}")
                break

    if problems:
        raise GraderContractError(g.name, problems)
    return first
