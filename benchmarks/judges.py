"""Model-judge throughput: a serial sync reward function vs rftkit's async judge.

256 judgments against the fake OpenAI-compatible server of the tests (loopback, 100 ms
per answer, like a small hosted model), run in its own process as a real server is:

- baseline: what a sync TRL reward function does: one blocking chat request per
  completion, one after another (httpx.Client, the same HTTP stack);
- rftkit: the ``score_model`` grader on :mod:`rft.judges.client` with
  ``max_concurrency: 32``, one batch through ``Grader.grade``.

Both parse the same replies. Then the price of holding the judge limits per run
(:mod:`rft.scoring.limits`): acquire + release of a request slot through the
per-process limiter vs the run-wide one a local executor's workers use (a Unix socket
to the executor's process), one at a time (latency added to each request) and 32 at a
time (throughput), and the rftkit run again through the run-wide limiter. Run::

    .venv/bin/python benchmarks/judges.py [--n 256] [--latency 0.1] [--concurrency 32]
"""

from __future__ import annotations

import sys

# Run as a script, this directory comes first on sys.path, and benchmarks/signal.py would stand in
# for the standard library's `signal` module (subprocess and asyncio import it). Take it off first.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graders.judges import parse_score
from rft.core import OutcomeKind, Sample
from rft.judges.client import close_all, get_endpoint
from rft.plugins import grader_set_from_config
from rft.scoring.limits import LimiterServer, LimitSpec, LocalLimiter, SocketLimiter, install

PROMPT = "Rate the answer from 0 to 10.\nAnswer: {completion}\nEnd your reply with a line 'Score: <number>'."


def serial_reward(base_url: str, completions: list[str]) -> list[float]:
    """A sync TRL-style reward function: one request per completion, in order."""
    import httpx

    scores = []
    with httpx.Client(timeout=60) as client:
        for c in completions:
            r = client.post(
                f"{base_url}/chat/completions",
                json={"model": "judge", "messages": [{"role": "user", "content": PROMPT.format(completion=c)}]},
            )
            r.raise_for_status()
            scores.append(parse_score(r.json()["choices"][0]["message"]["content"], 0, 10)[0])
    return scores


@contextlib.contextmanager
def fake_server(latency: float, workers: int) -> Iterator[str]:
    """tests/fake_openai.py in subprocesses; yields its base URL."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).resolve().parent.parent / "tests" / "fake_openai.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), "--latency", str(latency), "--workers", str(workers)]
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m", "messages": []}, timeout=5
                )
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the fake judge server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def limiter_cost(limiter: LocalLimiter | SocketLimiter, n: int, concurrency: int) -> float:
    """Seconds per request slot (acquire + release), ``concurrency`` requests at a time."""
    spec = LimitSpec(key="bench", name="bench", max_concurrency=concurrency, budget_tokens=10**12)

    async def run() -> float:
        async def one() -> None:
            lease = await limiter.acquire(spec, 100)
            await asyncio.sleep(0)  # the request
            limiter.release(lease, (100, 0.0))

        await one()  # connect
        t0 = time.perf_counter()
        for start in range(0, n, concurrency):
            await asyncio.gather(*(one() for _ in range(min(concurrency, n - start))))
        seconds = (time.perf_counter() - t0) / n
        await limiter.aclose()
        return seconds

    return asyncio.run(run())


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"benchmark invalid: {message}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="judgments")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds the fake judge takes per answer")
    ap.add_argument("--concurrency", type=int, default=32, help="max_concurrency of the rftkit judge")
    ap.add_argument("--server-workers", type=int, default=4, help="processes of the fake judge server")
    args = ap.parse_args()

    completions = [f"answer {i} [[Score: {i % 11}]]" for i in range(args.n)]
    expected = [float(i % 11) for i in range(args.n)]
    with fake_server(args.latency, args.server_workers) as base_url:
        t0, c0 = time.perf_counter(), time.process_time()
        serial = serial_reward(base_url, completions)
        t_serial, c_serial = time.perf_counter() - t0, time.process_time() - c0
        check(serial == expected, "the serial baseline read wrong scores")

        gs = grader_set_from_config(
            {
                "graders": [
                    {
                        "type": "score_model",
                        "name": "judge",
                        "model": "judge",
                        "range": [0, 10],
                        "base_url": base_url,
                        "max_concurrency": args.concurrency,
                        "input": [
                            {"role": "user", "content": "Rate the answer from 0 to 10.\nAnswer: {{sample.output_text}}"}
                        ],
                    }
                ]
            }
        )
        judge = gs["judge"].grader
        judge.grade([Sample("warm-up [[Score: 1]]")])  # open the connection pool, as a run's first step would
        t0, c0 = time.perf_counter(), time.process_time()
        outcomes = judge.grade([Sample(c) for c in completions])
        t_async, c_async = time.perf_counter() - t0, time.process_time() - c0
        check(
            all(o.kind is OutcomeKind.SCORE for o in outcomes),
            f"judge errors: {[o.error for o in outcomes if o.error][:3]}",
        )
        check([o.score for o in outcomes] == expected, "the rftkit judge read wrong scores")
        judge_fn: Any = judge.fn
        ep = get_endpoint(judge_fn.endpoint)
        usage, in_flight = ep.usage, ep.max_in_flight

        limits = LimiterServer()  # what a local executor's worker processes talk to
        try:
            cost = {
                (kind, c): limiter_cost(LocalLimiter() if kind == "process" else SocketLimiter(limits.path), 2000, c)
                for kind in ("process", "run")
                for c in (1, 32)
            }
            install(SocketLimiter(limits.path))
            close_all()  # a fresh client loop, connected to the run's limiter
            judge.grade([Sample("warm-up [[Score: 1]]")])
            t0 = time.perf_counter()
            shared = judge.grade([Sample(c) for c in completions])
            t_shared = time.perf_counter() - t0
            check([o.score for o in shared] == expected, "the judge read wrong scores through the run's limiter")
        finally:
            close_all()  # closes the connection to the run's limiter too
            install(None)
            limits.close()

    print(f"{args.n} judgments, fake judge latency {args.latency * 1000:.0f} ms (loopback)")
    print(
        f"  serial sync reward function : {t_serial:7.2f} s  ({args.n / t_serial:6.1f} judgments/s, "
        f"client CPU {c_serial * 1000 / args.n:.1f} ms/judgment)"
    )
    print(
        f"  rftkit score_model (c={args.concurrency:<3d}) : {t_async:7.2f} s  ({args.n / t_async:6.1f} judgments/s, "
        f"client CPU {c_async * 1000 / args.n:.1f} ms/judgment, max {in_flight} in flight, "
        f"{usage.total_tokens} tokens counted)"
    )
    print(
        f"  speed-up: {t_serial / t_async:.1f}x  (ideal {min(args.concurrency, args.n)}x when latency, not CPU, bounds it)"
    )
    for c in (1, 32):
        here, run = cost[("process", c)] * 1e6, cost[("run", c)] * 1e6
        print(
            f"  judge limits, {c:2d} at a time: per process {here:6.1f} us/request, per run (socket) "
            f"{run:6.1f} us/request  ({run / here:.1f}x)"
        )
    print(
        f"  rftkit score_model through the run's limiter: {t_shared:7.2f} s "
        f"({args.n / t_shared:6.1f} judgments/s, {t_shared / t_async:.2f}x the per-process time)"
    )


if __name__ == "__main__":
    main()
