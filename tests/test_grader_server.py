"""`rft serve-graders` and the `remote` grader, over real HTTP on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from fake_openai import FakeOpenAI

from rft.core import GraderSet, OutcomeKind, Sample
from rft.judges.client import close_all
from rft.plugins import grader_set_from_config, grader_set_from_file

PLUGIN = '''
import asyncio

import rft


@rft.grader
def picky(completion: str):
    """None for 'skip', an exception for 'boom', else the share of vowels."""
    if completion == "skip":
        return None
    if completion == "boom":
        raise ValueError("boom is not an answer")
    return sum(c in "aeiou" for c in completion) / max(len(completion), 1)


@rft.grader
async def slow(completion: str) -> float:
    await asyncio.sleep(3 if completion == "slow" else 0)
    return 1.0


@rft.hookimpl
def rft_register_graders(register):
    register(picky)
    register(slow)
'''

# every outcome kind a grader can produce without a timeout, in one batch
SAMPLES = [
    Sample("Paris", item={"answer": "Paris"}),  # exact match; picky scores; judge says its default "Score: 1"
    Sample("paris it is [[Score: 3]]", item={"answer": "Paris"}),  # no exact match; the judge says 3
    Sample("skip", item={"answer": "x"}),  # picky: not applicable
    Sample("boom", item={"answer": "x"}),  # picky: grader error
    Sample("[[no idea]]", item={"answer": "x"}),  # judge: unparseable
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def graders_file(tmp_path_factory, judge_server):
    d = tmp_path_factory.mktemp("served")
    (d / "plug.py").write_text(PLUGIN)
    (d / "graders.yaml").write_text(
        textwrap.dedent(f"""
        plugins: [plug.py]
        graders:
          - name: exact_match
          - type: string_check
            name: city
            input: "{{{{sample.output_text}}}}"
            reference: "{{{{item.answer}}}}"
            operation: ilike
          - name: picky
          - name: slow
            timeout: 0.3
          - type: score_model
            name: judge
            model: judge
            base_url: {judge_server.base_url}
            input: [{{role: user, content: "Grade: {{{{sample.output_text}}}}"}}]
            range: [0, 10]
    """)
    )
    return d / "graders.yaml"


@pytest.fixture(scope="module")
def grader_url(graders_file):
    """`rft serve-graders` in a subprocess, as a user starts it."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rft",
            "serve-graders",
            "--graders",
            str(graders_file),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rft serve-graders exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("rft serve-graders did not answer /health within 90 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        close_all()


def remote_set(url: str, ids: list[str], **settings) -> GraderSet:
    return grader_set_from_config(
        {"graders": [{"name": "remote", "id": i, "url": url, "grader": i, **settings} for i in ids]}
    )


def comparable(outcome) -> tuple:
    # everything but the latency and the traceback text (frames differ between a thread and a server)
    return outcome.kind, outcome.score, outcome.reason, outcome.error, outcome.metrics


def test_remote_grader_gives_the_same_outcomes_as_the_local_grader(graders_file, grader_url):
    local = grader_set_from_file(graders_file)
    ids = ["exact_match", "city", "picky", "judge"]
    remote = remote_set(grader_url, ids)
    for gid in ids:
        want = [comparable(o) for o in local[gid].grader.grade(SAMPLES)]
        got = [comparable(o) for o in remote[gid].grader.grade(SAMPLES)]
        assert got == want, gid
    # and the batch really covered each kind
    kinds = {o.kind for gid in ids for o in remote[gid].grader.grade(SAMPLES)}
    assert kinds == {
        OutcomeKind.SCORE,
        OutcomeKind.NOT_APPLICABLE,
        OutcomeKind.GRADER_ERROR,
        OutcomeKind.JUDGE_UNPARSEABLE,
    }
    boom = remote["picky"].grader.grade([SAMPLES[3]])[0]
    assert "ValueError: boom is not an answer" in boom.traceback  # the server's traceback travels along


def test_remote_grader_through_the_scoring_engine(grader_url):
    from rft.scoring import make_executor

    with make_executor(remote_set(grader_url, ["exact_match", "city"]), "local", inline=True) as ex:
        result = ex.score(SAMPLES[:2])
    assert result.scores("exact_match") == [1.0, 0.0]
    assert result.scores("city") == [1.0, 1.0]  # ilike: "paris" contains "Paris" ignoring case


def test_server_timeout_comes_back_as_a_timeout(grader_url):
    fast, slow = remote_set(grader_url, ["slow"])["slow"].grader.grade([Sample("quick"), Sample("slow")])
    assert (fast.kind, fast.score) == (OutcomeKind.SCORE, 1.0)
    assert slow.kind is OutcomeKind.TIMEOUT and "timeout of 0.3s" in slow.error


def test_unknown_grader_id_names_the_valid_ones(grader_url):
    (out,) = remote_set(grader_url, ["exact_mach"])["exact_mach"].grader.grade(SAMPLES[:1])
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "HTTP 404" in out.error and "did you mean 'exact_match'" in out.error


def test_grader_server_down_is_infrastructure():
    gs = remote_set(f"http://127.0.0.1:{free_port()}", ["exact_match"], max_retries=1)
    (out,) = gs["exact_match"].grader.grade(SAMPLES[:1])
    assert out.kind is OutcomeKind.INFRASTRUCTURE and "connection error" in out.error


def test_health_and_grader_listing(grader_url):
    health = httpx.get(f"{grader_url}/health").json()
    assert health["status"] == "ok" and health["graders"] == ["exact_match", "city", "picky", "slow", "judge"]
    rows = {r["id"]: r for r in httpx.get(f"{grader_url}/v1/graders").json()["graders"]}
    assert rows["exact_match"]["columns"] == ["answer"]
    assert rows["city"]["name"] == "string_check" and rows["slow"]["timeout"] == 0.3
    # a malformed request is refused with the reason, not graded
    bad = httpx.post(f"{grader_url}/v1/grade", json={"samples": [{"item": {}}]})
    assert bad.status_code == 422 and "completion" in bad.text
