"""Judge limits hold per run: max_concurrency, rate limits and budget across every worker.

Each test runs a judge in two worker processes (local executor) or two Ray actors, against
the fake OpenAI server of tests/fake_openai.py, which counts what arrives: with limits held
per process, each worker would bring its own allowance and the server would see twice the
limit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from rft.core import GraderSet, OutcomeKind, Sample
from rft.judges.client import close_all
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor
from rft.scoring.limits import LimiterServer, LimiterService, LimitSpec, SocketLimiter

INPUT = [{"role": "user", "content": "Rate: {{sample.output_text}}"}]

EXECUTORS = [
    pytest.param("local", id="local"),
    pytest.param("ray", id="ray", marks=[pytest.mark.ray, pytest.mark.slow]),
]


@pytest.fixture(scope="module", autouse=True)
def _close_client_loop():
    yield
    close_all()


@pytest.fixture
def executor_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "ray":
        request.getfixturevalue("ray_cluster")
    return kind


def judge_set(base_url: str, **settings: Any) -> GraderSet:
    entry = {"type": "score_model", "name": "judge", "model": "m", "input": INPUT, "range": [0, 10]}
    return grader_set_from_config({"graders": [{**entry, "base_url": base_url, **settings}]})


def score(kind: str, gs: GraderSet, n: int, **options: Any) -> list[Any]:
    opts = ScoringOptions(num_workers=2, error_budget=1.0, cache=False, **options)
    with make_executor(gs, kind, opts) as ex:
        result = ex.score([Sample(f"answer {i} [[Score: {i % 11}]]") for i in range(n)])
    return [per["judge"] for per in result.outcomes]


# -- across two workers or actors, against a server that counts -----------------------------


@pytest.mark.parametrize("executor_kind", EXECUTORS, indirect=True)
def test_max_concurrency_holds_across_two_workers(executor_kind):
    with FakeOpenAI(latency=0.1) as server:
        outcomes = score(executor_kind, judge_set(server.base_url, max_concurrency=3), 24)
    assert [o.score for o in outcomes] == [float(i % 11) for i in range(24)]
    # per process, each of the two workers would bring its own 3 slots: up to 6 in flight
    assert 2 <= server.max_in_flight <= 3


@pytest.mark.parametrize("executor_kind", EXECUTORS, indirect=True)
def test_request_rate_holds_across_two_workers(executor_kind):
    # 4 requests per minute: a bucket of 4 at once, then one every 15 s. Two workers with a
    # bucket each would send 8 before the 3 s timeout; one bucket for the run sends 4.
    with FakeOpenAI() as server:
        outcomes = score(executor_kind, judge_set(server.base_url, requests_per_minute=4), 8, default_timeout=3)
    kinds = sorted(o.kind.value for o in outcomes)
    assert kinds == ["score"] * 4 + ["timeout"] * 4
    assert server.requests == 4


@pytest.mark.parametrize("executor_kind", EXECUTORS, indirect=True)
def test_budget_holds_across_two_workers(executor_kind):
    # one request spends the whole 1-token budget; one at a time, so the next sees it spent.
    # Per process, each worker would get one judgment through.
    with FakeOpenAI() as server:
        outcomes = score(executor_kind, judge_set(server.base_url, budget_tokens=1, max_concurrency=1), 6)
    assert server.requests == 1
    assert sorted(o.kind.value for o in outcomes) == ["infrastructure"] * 5 + ["score"]
    refused = [o for o in outcomes if o.kind is OutcomeKind.INFRASTRUCTURE]
    assert all("judge budget spent" in str(o.error) and "in this run" in str(o.error) for o in refused)


def test_rft_grade_keeps_max_concurrency(tmp_path: Path):
    # what a new user runs: `rft grade` with its default two worker processes
    from rft.cli.main import app

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "answer": f"[[Score: {i % 11}]]"}) + "\n" for i in range(32))
    )
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps({"row": i, "completion": f"a{i}"}) + "\n" for i in range(32)))
    with FakeOpenAI(latency=0.1) as server:
        graders = tmp_path / "graders.json"
        entry = {
            "type": "score_model",
            "name": "judge",
            "model": "m",
            "range": [0, 10],
            "input": [{"role": "user", "content": "{{sample.output_text}} {{item.answer}}"}],
            "base_url": server.base_url,
            "max_concurrency": 4,
        }
        graders.write_text(json.dumps({"graders": [entry]}))
        args = ["grade", "--data", str(rows), "--completions", str(completions), "--graders", str(graders)]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert server.requests == 32
    assert 2 <= server.max_in_flight <= 4  # two workers, one limit of 4 for the run


# -- the service itself, without processes --------------------------------------------------


def test_service_gives_back_what_a_gone_owner_held_and_cancels_what_it_waited_for():
    spec = LimitSpec(key="k", name="http://h/v1", max_concurrency=1)

    async def main() -> list[Any]:
        service = LimiterService()
        await service.acquire("worker-1", "a", spec, 0)
        waiting = asyncio.ensure_future(service.acquire("worker-1", "b", spec, 0))
        await asyncio.sleep(0.01)
        seen = [service.in_flight("k"), waiting.done()]  # b waits for the one slot
        service.forget("worker-1")  # the worker died holding "a" and waiting for "b"
        await asyncio.sleep(0.01)
        seen += [service.in_flight("k"), waiting.cancelled()]
        service.release("c")  # a release that overtook its acquire (Ray does not order them)
        with pytest.raises(asyncio.CancelledError):
            await service.acquire("worker-2", "c", spec, 0)
        await asyncio.wait_for(service.acquire("worker-2", "d", spec, 0), 1)  # the slot is free again
        return seen

    assert asyncio.run(main()) == [1, False, 0, True]


def test_socket_server_gives_back_the_slot_of_a_closed_connection():
    # a local worker killed at its timeout closes its connection while holding a slot
    spec = LimitSpec(key="k", name="http://h/v1", max_concurrency=1)
    server = LimiterServer()
    try:

        async def main() -> None:
            reader, writer = await asyncio.open_unix_connection(server.path)
            writer.write(json.dumps({"op": "a", "id": "dead-1", "spec": spec.to_dict(), "n": 0}).encode() + b"\n")
            assert json.loads(await reader.readline()) == {"id": "dead-1"}
            limiter = SocketLimiter(server.path)
            second = asyncio.ensure_future(limiter.acquire(spec, 0))
            await asyncio.sleep(0.05)
            assert not second.done()  # the dead worker still holds the only slot
            writer.close()
            lease = await asyncio.wait_for(second, 2)
            limiter.release(lease, (5, 0.5))
            await asyncio.sleep(0.05)

        asyncio.run(main())
        assert server.service.spent("k") == (5, 0.5, 1)
    finally:
        server.close()
