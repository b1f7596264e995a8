"""The ``tool_call`` grader's verdicts against BFCL's own ``ast_checker``.

For BFCL's simple (Python), multiple, parallel and parallel_multiple categories (and, when
asked, the live_* ones), each entry's possible answer is turned into model outputs that
should pass (first allowed values, last allowed values, optional arguments omitted) and
into perturbed ones (a wrong value, a missing required argument, an undeclared or
unlisted extra argument, the wrong function, parallel calls reversed, a call dropped or
repeated, type changes, a string's case and punctuation changed …). Each output is judged by BFCL's ``ast_checker`` and by
``tool_call`` (``strings: bfcl``, ``partial: false``, the entry's ``function`` list as
tools, the possible-answer entry as is as reference; the calls are given as OpenAI
``tool_calls`` with JSON-text arguments). The script prints the agreement per category and
per case kind, and the disagreements.

Needs ``pip install 'rftkit[bench]'`` (PyPI ``bfcl-eval``, which ships the data and the
checker). Only the checker module is imported: BFCL's model registry, which imports every
provider's SDK, is replaced by a stub (the only thing the checker reads from it is whether
a model writes ``.`` in function names as ``_``; here it does not).

    python benchmarks/bfcl_agreement.py [--categories simple,multiple] [--limit N] [--show 10] [--json out.json]
"""

from __future__ import annotations

import sys

# Run as a script, this directory comes first on sys.path, and benchmarks/signal.py would stand in
# for the standard library's `signal` module (subprocess and asyncio import it). Take it off first.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import copy
import importlib.resources
import json
import math
import time
import types
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

CATEGORIES = {
    "simple": "simple_python",
    "multiple": "multiple",
    "parallel": "parallel",
    "parallel_multiple": "parallel_multiple",
    "live_simple": "live_simple",
    "live_multiple": "live_multiple",
    "live_parallel": "live_parallel",
    "live_parallel_multiple": "live_parallel_multiple",
}
DEFAULT = ("simple", "multiple", "parallel", "parallel_multiple")
MODEL = "rftkit-benchmark"

Call = dict[str, dict[str, Any]]  # BFCL's decoded model output item: {"func": {"arg": value}}


def load_checker() -> Callable[..., dict[str, Any]]:
    """BFCL's ``ast_checker``, imported without its model registry (a stub stands in for it)."""
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {MODEL: types.SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
    sys.modules.setdefault("bfcl_eval.constants.model_config", stub)
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    def check(functions: list[Any], output: list[Call], answer: list[Any], category: str) -> dict[str, Any]:
        return dict(ast_checker(functions, output, answer, Language.PYTHON, category, MODEL))

    return check


def load(category: str, limit: int | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(prompt entry, possible-answer entry) pairs of one BFCL category."""
    data = importlib.resources.files("bfcl_eval") / "data"
    name = f"BFCL_v4_{CATEGORIES[category]}.json"
    prompts = [json.loads(line) for line in (data / name).read_text().splitlines() if line.strip()]
    answers = {
        e["id"]: e
        for e in (json.loads(line) for line in (data / "possible_answer" / name).read_text().splitlines() if line)
    }
    pairs = [(p, answers[p["id"]]) for p in prompts]
    return pairs[:limit] if limit else pairs


# -- model outputs made from a possible answer ---------------------------------------


def _instance(option: Any, pick: int) -> Any:
    """A value from one allowed value: a BFCL dict pattern becomes a dict of its allowed values."""
    if isinstance(option, dict):
        out = {}
        for k, allowed in option.items():
            values = [v for v in allowed if v != ""]
            if values:
                out[k] = values[pick if pick < 0 else 0]
        return out
    if isinstance(option, list) and any(isinstance(o, dict) for o in option):
        return [_instance(o, pick) for o in option]
    return copy.deepcopy(option)


def answer_output(answer: list[Any], pick: int = 0, omit_optional: bool = False) -> list[Call]:
    """The calls of a possible answer with the ``pick``-th allowed value of each argument."""
    out = []
    for call in answer:
        ((name, params),) = call.items()
        args = {}
        for key, allowed in params.items():
            values = [v for v in allowed if v != ""]
            if not values or (omit_optional and "" in allowed):
                continue
            args[key] = _instance(values[pick], pick)
        out.append({name: args})
    return out


def _schema(functions: list[Any], name: str) -> dict[str, Any]:
    for f in functions:
        if f["name"] == name:
            return dict(f["parameters"])
    return {"properties": {}, "required": []}


def _changed(value: Any) -> Any:
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value + 1.5
    if isinstance(value, str):
        return value + " zzz"
    if isinstance(value, list):
        return value[:-1] if value else ["zzz"]
    if isinstance(value, dict):
        return {**value, "zzz": 1}
    return "zzz"


def perturbations(base: list[Call], functions: list[Any]) -> Iterator[tuple[str, list[Call]]]:
    """(kind, perturbed output) pairs from a correct output."""
    first = base[0]
    ((name, args),) = first.items()
    schema = _schema(functions, name)
    props = schema.get("properties", {})
    required = [k for k in schema.get("required", []) if k in args]

    def with_first(new_name: str, new_args: dict[str, Any]) -> list[Call]:
        return [{new_name: new_args}, *copy.deepcopy(base[1:])]

    for key, value in args.items():  # the first argument of each JSON type, once per kind
        yield f"wrong_value:{type(value).__name__}", with_first(name, {**args, key: _changed(value)})
        kind = props.get(key, {}).get("type")
        if isinstance(value, bool):
            yield "type:bool->str", with_first(name, {**args, key: str(value).lower()})
        elif isinstance(value, int):
            yield "type:int->str", with_first(name, {**args, key: str(value)})
            yield "type:int->float", with_first(name, {**args, key: float(value)})
        elif isinstance(value, float):
            if value.is_integer():
                yield "type:float->int", with_first(name, {**args, key: int(value)})
            yield "type:float->str", with_first(name, {**args, key: str(value)})
        elif isinstance(value, str):
            yield "string:case_and_punctuation", with_first(name, {**args, key: value.upper().replace(" ", "_")})
            yield "string:inner_word_changed", with_first(name, {**args, key: "x" + value})
            if kind == "string":
                yield "type:str->list", with_first(name, {**args, key: [value]})
        elif isinstance(value, list):
            if value and all(isinstance(v, float) and v.is_integer() for v in value):
                yield "type:float_items->int", with_first(name, {**args, key: [int(v) for v in value]})
            if len(value) > 1:
                yield "list:reversed", with_first(name, {**args, key: value[::-1]})
        elif isinstance(value, dict) and value:
            k0 = next(iter(value))
            yield "dict:key_dropped", with_first(name, {**args, key: {k: v for k, v in value.items() if k != k0}})
    for key in required[:1]:
        yield "missing_required", with_first(name, {k: v for k, v in args.items() if k != key})
    optional_declared = [k for k in props if k not in args]
    if optional_declared:
        yield "extra_declared_arg", with_first(name, {**args, optional_declared[0]: "zzz"})
    yield "extra_undeclared_arg", with_first(name, {**args, "zzz_unexpected": 1})
    others = [f["name"] for f in functions if f["name"] != name]
    if others:
        yield "wrong_function:other_offered", with_first(others[0], copy.deepcopy(args))
    yield "wrong_function:renamed", with_first(name + "_v2", copy.deepcopy(args))
    yield "no_call", []
    yield "call_repeated", [*copy.deepcopy(base), copy.deepcopy(base[-1])]
    if len(base) > 1:
        yield "parallel:reversed", copy.deepcopy(base[::-1])
        yield "parallel:rotated", copy.deepcopy(base[1:] + base[:1])
        yield "parallel:call_dropped", copy.deepcopy(base[:-1])
        yield "parallel:two_args_swapped_between_calls", _swap_between_calls(base)


def _swap_between_calls(base: list[Call]) -> list[Call]:
    """The first argument's values of the first two calls exchanged (when both have one)."""
    out = copy.deepcopy(base)
    ((_, a0),), ((_, a1),) = out[0].items(), out[1].items()
    common = [k for k in a0 if k in a1 and a0[k] != a1[k]]
    if common:
        a0[common[0]], a1[common[0]] = a1[common[0]], a0[common[0]]
    return out


def cases(prompt: dict[str, Any], answer: list[Any]) -> Iterator[tuple[str, list[Call]]]:
    """Every model output made for one entry, with its kind."""
    base = answer_output(answer)
    yield "answer:first_allowed", base
    last = answer_output(answer, pick=-1)
    if last != base:
        yield "answer:last_allowed", last
    minimal = answer_output(answer, omit_optional=True)
    if minimal != base:
        yield "answer:optional_omitted", minimal
    if len(base) > 1:
        yield "answer:reversed", base[::-1]
    yield from perturbations(base, prompt["function"])


# -- the two judges ------------------------------------------------------------------


def to_openai(output: list[Call]) -> list[dict[str, Any]]:
    """BFCL's decoded calls as Chat Completions ``tool_calls`` (arguments as JSON text)."""
    return [
        {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for call in output
        for name, args in call.items()
    ]


def compare(
    categories: list[str], limit: int | None = None
) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]], list[dict[str, Any]]]:
    """Judge every case of ``categories`` both ways: (counts per category, per case kind, differences).

    Raises:
        ImportError: bfcl_eval is not installed.
        KeyError: an unknown category.
    """
    check = load_checker()
    from rft.core import Sample
    from rft.plugins import get_plugin_manager, get_registry

    registry = get_registry(get_plugin_manager(entry_points=False))
    grader = registry.get("tool_call").make(
        {"reference_column": "ground_truth", "tools_column": "function", "strings": "bfcl", "partial": False}
    )
    per_cat: dict[str, Counter[str]] = {}
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    differences: list[dict[str, Any]] = []
    for category in categories:
        counts: Counter[str] = Counter()
        samples, meta = [], []
        for prompt, entry in load(category, limit):
            for kind, output in cases(prompt, entry["ground_truth"]):
                try:
                    theirs = bool(check(prompt["function"], output, entry["ground_truth"], category)["valid"])
                except Exception as err:  # the checker's own crash: counted apart, never as a verdict
                    counts["checker_crashed"] += 1
                    differences.append({"id": entry["id"], "kind": kind, "checker_error": repr(err)})
                    continue
                row = {"id": entry["id"], "function": prompt["function"], "ground_truth": entry}
                samples.append(Sample("", item=row, tool_calls=to_openai(output)))
                meta.append((entry["id"], kind, output, theirs))
        for (entry_id, kind, output, theirs), out in zip(meta, grader.grade(samples), strict=True):
            if not out.ok:
                counts["grader_error"] += 1
                differences.append({"id": entry_id, "kind": kind, "grader_error": out.error or out.reason})
                continue
            ours = out.score == 1.0
            for c in (counts, per_kind[kind]):
                c["cases"] += 1
                c["agree"] += ours == theirs
                c["bfcl_valid"] += theirs
            if ours != theirs:
                differences.append(
                    {
                        "id": entry_id,
                        "kind": kind,
                        "output": output,
                        "bfcl": theirs,
                        "tool_call": ours,
                        "reason": out.reason,
                    }
                )
        per_cat[category] = counts
    return per_cat, dict(per_kind), differences


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--categories", default=",".join(DEFAULT), help="comma-separated of: " + ", ".join(CATEGORIES))
    ap.add_argument("--limit", type=int, default=None, help="entries per category (default: all)")
    ap.add_argument("--show", type=int, default=10, help="disagreements to print")
    ap.add_argument("--json", default=None, help="write every disagreement to this file")
    ns = ap.parse_args(argv)
    categories = [c.strip() for c in ns.categories.split(",") if c.strip()]
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        ap.error(f"unknown category {unknown[0]!r}; choose from {', '.join(CATEGORIES)}")
    t0 = time.perf_counter()
    try:
        per_cat, per_kind, differences = compare(categories, ns.limit)
    except ImportError as err:
        print(f"bfcl_eval is not importable ({err}); install it: pip install 'rftkit[bench]'", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0

    def pct(c: Counter[str]) -> str:
        # rounded down, so 25772 of 25773 does not read 100.00 %
        return f"{math.floor(10000 * c['agree'] / c['cases']) / 100:.2f} %" if c["cases"] else "-"

    print("| category | cases | BFCL valid | agree | agreement |")
    print("| --- | --- | --- | --- | --- |")
    for category, c in per_cat.items():
        print(f"| {category} | {c['cases']} | {c['bfcl_valid']} | {c['agree']} | {pct(c)} |")
    total = sum(per_cat.values(), Counter())
    print(f"| **all** | {total['cases']} | {total['bfcl_valid']} | {total['agree']} | {pct(total)} |")
    if total["checker_crashed"] or total["grader_error"]:
        print(f"\nBFCL's checker crashed on {total['checker_crashed']}, tool_call errored on {total['grader_error']}")
    print("\n| case kind | cases | BFCL valid | agreement |")
    print("| --- | --- | --- | --- |")
    for kind in sorted(per_kind):
        c = per_kind[kind]
        print(f"| {kind} | {c['cases']} | {c['bfcl_valid']} | {pct(c)} |")
    print(f"\n{total['cases']} cases in {elapsed:.1f} s; {len(differences)} differences")
    for d in differences[: ns.show]:
        print(json.dumps(d, default=str)[:600])
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump(differences, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
