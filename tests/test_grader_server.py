"""`rft serve-graders` and the `remote` grader, over real HTTP on loopback.

The server runs as a user starts it (`python -m rft serve-graders`, with a token and small
limits), so every test goes through the token check, the size limits and the scoring engine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from rft.core import GraderSet, OutcomeKind, Sample
from rft.judges.client import close_all
from rft.plugins import grader_set_from_config, grader_set_from_file

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_SAMPLES = 20
MAX_BODY = 100_000

PLUGIN = '''
import asyncio
import time

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


@rft.grader
def nap(completion: str) -> float:
    """Sleeps as many seconds as the completion says (a slow sync grader)."""
    time.sleep(float(completion))
    return 1.0


@rft.grader
def seen_prompt(prompt) -> rft.Grade:
    """The prompt the grader was given, as its reason."""
    return rft.Grade(1.0, repr(prompt))


@rft.hookimpl
def rft_register_graders(register):
    register(picky)
    register(slow)
    register(nap)
    register(seen_prompt)
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
          - name: nap
            timeout: 2
          - name: seen_prompt
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
            "--max-samples",
            str(MAX_SAMPLES),
            "--max-body-bytes",
            str(MAX_BODY),
        ],
        env={**os.environ, "RFT_GRADER_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"rft serve-graders exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}"
                )
            try:
                if httpx.get(f"{url}/health", headers=AUTH, timeout=1).status_code == 200:
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
    settings.setdefault("token", TOKEN)
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
    assert "ValueError: boom is not an answer" in str(boom.traceback)  # the server's traceback travels along


def test_remote_grader_through_the_scoring_engine(grader_url):
    from rft.scoring import make_executor

    with make_executor(remote_set(grader_url, ["exact_match", "city"]), "local", inline=True) as ex:
        result = ex.score(SAMPLES[:2])
    assert result.scores("exact_match") == [1.0, 0.0]
    assert result.scores("city") == [1.0, 1.0]  # ilike: "paris" contains "Paris" ignoring case


def test_server_timeout_comes_back_as_a_timeout(grader_url):
    fast, slow = remote_set(grader_url, ["slow"])["slow"].grader.grade([Sample("quick"), Sample("slow")])
    assert (fast.kind, fast.score) == (OutcomeKind.SCORE, 1.0)
    assert slow.kind is OutcomeKind.TIMEOUT and "timeout of 0.3 s" in str(slow.error)


def test_a_hung_sync_grader_is_stopped_by_the_engine_and_the_server_goes_on(grader_url):
    # nap sleeps 30 s in plain Python, which no thread can interrupt: only the engine's
    # worker kill ends it at the entry's timeout of 2 s
    gs = remote_set(grader_url, ["nap"])
    t0 = time.monotonic()
    hung, quick = gs["nap"].grader.grade([Sample("30"), Sample("0")])
    assert time.monotonic() - t0 < 15
    assert hung.kind is OutcomeKind.TIMEOUT and "timeout of 2 s" in str(hung.error)
    assert (quick.kind, quick.score) == (OutcomeKind.SCORE, 1.0)
    (again,) = gs["nap"].grader.grade([Sample("0.01")])  # a fresh worker took the killed one's place
    assert (again.kind, again.score) == (OutcomeKind.SCORE, 1.0)


def test_a_slow_request_does_not_hold_up_a_fast_one(grader_url):
    def post(completion: str, done: dict[str, float]) -> None:
        body = {"graders": ["nap"], "samples": [{"completion": completion}]}
        r = httpx.post(f"{grader_url}/v1/grade", json=body, headers=AUTH, timeout=30)
        assert r.json()["outcomes"][0]["nap"]["kind"] == "score"
        done[completion] = time.monotonic()

    # warm two executors of the grader, so the timing below is not a worker start-up
    warm: dict[str, float] = {}
    warmers = [threading.Thread(target=post, args=(c, warm)) for c in ("0.5", "0.51")]
    for t in warmers:
        t.start()
    for t in warmers:
        t.join()
    done: dict[str, float] = {}
    slow = threading.Thread(target=post, args=("1.5", done))
    slow.start()
    time.sleep(0.3)  # the slow request is being scored
    t0 = time.monotonic()
    post("0.001", done)
    fast_s = time.monotonic() - t0
    slow.join()
    assert done["0.001"] < done["1.5"], f"the fast request took {fast_s:.2f}s, behind the slow one"


def test_unknown_grader_id_names_the_valid_ones(grader_url):
    (out,) = remote_set(grader_url, ["exact_mach"])["exact_mach"].grader.grade(SAMPLES[:1])
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "HTTP 404" in str(out.error) and "did you mean 'exact_match'" in str(out.error)


def test_grader_server_down_is_infrastructure():
    gs = remote_set(f"http://127.0.0.1:{free_port()}", ["exact_match"], max_retries=1)
    (out,) = gs["exact_match"].grader.grade(SAMPLES[:1])
    assert out.kind is OutcomeKind.INFRASTRUCTURE and "connection error" in str(out.error)


def test_health_and_grader_listing(grader_url):
    health = httpx.get(f"{grader_url}/health", headers=AUTH).json()
    assert health["status"] == "ok" and health["graders"] == [
        "exact_match",
        "city",
        "picky",
        "slow",
        "nap",
        "seen_prompt",
        "judge",
    ]
    rows = {r["id"]: r for r in httpx.get(f"{grader_url}/v1/graders", headers=AUTH).json()["graders"]}
    assert rows["exact_match"]["columns"] == ["answer"]
    assert rows["city"]["name"] == "string_check" and rows["slow"]["timeout"] == 0.3
    # a malformed request is refused with the reason, not graded
    bad = httpx.post(f"{grader_url}/v1/grade", json={"samples": [{"item": {}}]}, headers=AUTH)
    assert bad.status_code == 422 and "completion" in bad.text
    # the request body's schema is on the /docs page although the route reads the body itself
    spec = httpx.get(f"{grader_url}/openapi.json", headers=AUTH).json()
    assert "samples" in spec["components"]["schemas"]["GradeRequest"]["properties"]


@pytest.mark.parametrize(
    "sample, prompt",
    [
        # a text prompt in the row becomes chat messages, as the row model gives it to training
        ({"completion": "4", "item": {"prompt": "2+2?", "answer": "4"}}, [{"role": "user", "content": "2+2?"}]),
        # a chat row: the trailing assistant turn (the reference) is not part of the prompt
        (
            {
                "completion": "4",
                "item": {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
            },
            [{"role": "user", "content": "2+2?"}],
        ),
        # a prompt sent with the sample is used as sent
        ({"completion": "4", "item": {"prompt": "ignored"}, "prompt": "2+2?"}, "2+2?"),
    ],
)
def test_a_sample_without_a_prompt_gets_its_rows_prompt(grader_url, sample, prompt):
    body = {"graders": ["seen_prompt"], "samples": [sample]}
    r = httpx.post(f"{grader_url}/v1/grade", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["outcomes"][0]["seen_prompt"]["reason"] == repr(prompt)


# -- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no token
        {"Authorization": "Bearer wrong"},  # a wrong token
        {"Authorization": f"Basic {TOKEN}"},  # the right secret under another scheme
    ],
)
def test_requests_without_the_token_are_refused(grader_url, headers):
    for method, path in [("GET", "/health"), ("GET", "/v1/graders"), ("POST", "/v1/grade")]:
        r = httpx.request(method, f"{grader_url}{path}", json={"samples": []}, headers=headers)
        assert r.status_code == 401, (method, path)
        assert "bearer token" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"


def test_remote_grader_sends_the_token_from_the_environment(grader_url, monkeypatch):
    monkeypatch.setenv("RFT_GRADER_TOKEN", TOKEN)
    (out,) = remote_set(grader_url, ["exact_match"], token=None)["exact_match"].grader.grade(SAMPLES[:1])
    assert (out.kind, out.score) == (OutcomeKind.SCORE, 1.0)


def test_remote_grader_with_a_wrong_token_is_a_grader_error_naming_the_fix(grader_url, monkeypatch):
    monkeypatch.delenv("RFT_GRADER_TOKEN", raising=False)
    for settings in ({"token": "wrong"}, {"token": None}):
        (out,) = remote_set(grader_url, ["exact_match"], **settings)["exact_match"].grader.grade(SAMPLES[:1])
        assert out.kind is OutcomeKind.GRADER_ERROR
        assert "HTTP 401" in str(out.error) and "check `token`" in str(out.error)


def test_remote_grader_token_env_must_be_set(monkeypatch):
    from rft.core.errors import ConfigError

    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="'NO_SUCH_TOKEN', which is not set"):
        remote_set("http://127.0.0.1:1", ["x"], token=None, token_env="NO_SUCH_TOKEN")


# -- the limits --------------------------------------------------------------------------------


def test_too_many_samples_is_a_413_before_any_work(grader_url):
    body = {"graders": ["nap"], "samples": [{"completion": "5"}] * (MAX_SAMPLES + 1)}  # 105 s of naps
    t0 = time.monotonic()
    r = httpx.post(f"{grader_url}/v1/grade", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 413 and time.monotonic() - t0 < 5
    assert f"{MAX_SAMPLES + 1} samples" in r.json()["detail"] and "--max-samples" in r.json()["detail"]
    # the remote grader says what to change
    many = [Sample("Paris", item={"answer": "Paris"})] * (MAX_SAMPLES + 1)
    outs = remote_set(grader_url, ["exact_match"])["exact_match"].grader.grade(many)
    assert all(
        o.kind is OutcomeKind.GRADER_ERROR and "HTTP 413" in str(o.error) and "batch_size" in str(o.error) for o in outs
    )
    # within the limit, by the grader's own batching, the same samples are scored
    outs = remote_set(grader_url, ["exact_match"], batch_size=MAX_SAMPLES)["exact_match"].grader.grade(many)
    assert [o.score for o in outs] == [1.0] * len(many)


def test_a_body_over_the_size_limit_is_a_413_unread(grader_url):
    big = {"graders": ["exact_match"], "samples": [{"completion": "x" * (MAX_BODY + 1)}]}
    r = httpx.post(f"{grader_url}/v1/grade", json=big, headers=AUTH)
    assert r.status_code == 413 and f"limit of {MAX_BODY} bytes" in r.json()["detail"]

    # a chunked body (no Content-Length) is cut off at the limit as well
    def chunks():
        yield b'{"samples": [{"completion": "'
        for _ in range(MAX_BODY // 1000 + 1):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(f"{grader_url}/v1/grade", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "more than" in r.json()["detail"]
    # and a chunked body within the limit is graded
    small = iter([b'{"graders": ["exact_match"], ', b'"samples": [{"completion": "a", "item": {"answer": "a"}}]}'])
    r = httpx.post(f"{grader_url}/v1/grade", content=small, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["outcomes"][0]["exact_match"]["score"] == 1.0


# -- binding beyond loopback -------------------------------------------------------------------


def test_binding_beyond_loopback_needs_a_token(graders_file, tmp_path):
    from rft.cli.main import app

    runner = CliRunner()
    args = ["serve-graders", "--graders", str(graders_file), "--host", "0.0.0.0", "--port", str(free_port())]
    result = runner.invoke(app, args, env={"RFT_GRADER_TOKEN": ""})
    assert result.exit_code == 2
    assert "refusing to serve graders on 0.0.0.0 without a token" in result.output
    assert "RFT_GRADER_TOKEN" in result.output and "--token-file" in result.output
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = runner.invoke(app, [*args, "--token-file", str(empty)], env={"RFT_GRADER_TOKEN": ""})
    assert result.exit_code == 2 and "token file is empty" in result.output


def test_token_sources_and_loopback():
    from rft.core.errors import ConfigError
    from rft.judges.guard import check_bind, is_loopback, resolve_token

    assert [is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost")] == [True] * 4
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "grading-box", ""))
    check_bind("127.0.0.1", None)  # this machine only: no token needed
    check_bind("0.0.0.0", "t0ken")
    with pytest.raises(ConfigError, match="refusing"):
        check_bind("::", None)
    assert resolve_token(environ={"RFT_GRADER_TOKEN": "from-env"}) == "from-env"
    assert resolve_token(environ={"RFT_GRADER_TOKEN": "  "}) is None
    with pytest.raises(ConfigError, match="cannot read the token file"):
        resolve_token("/no/such/token", environ={})


# -- in process --------------------------------------------------------------------------------


class _HoldsALock:
    """A grader that cannot be pickled to worker processes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, completion: str) -> float:
        return 1.0


def test_graders_the_workers_cannot_receive_are_a_503_with_the_fix_and_run_inline():
    from fastapi.testclient import TestClient

    import rft
    from rft.judges.server import ServerOptions, create_app
    from rft.scoring import ScoringOptions

    gs = rft.GraderSet([rft.grader(_HoldsALock(), name="locked")])
    body = {"samples": [{"completion": "x"}]}
    with TestClient(create_app(gs)) as client:
        r = client.post("/v1/grade", json=body)
    assert r.status_code == 503 and "cannot be sent to worker processes" in r.json()["detail"]
    assert "inline=True" in r.json()["detail"]  # the engine's advice travels along
    # `rft serve-graders --inline`: graders in the server process
    with TestClient(create_app(gs, ServerOptions(scoring=ScoringOptions(inline=True)))) as client:
        r = client.post("/v1/grade", json=body)
    assert r.status_code == 200 and r.json()["graders"] == ["locked"]
    (per_sample,) = r.json()["outcomes"]
    assert per_sample["locked"]["kind"] == "score" and per_sample["locked"]["score"] == 1.0


def test_a_sample_keeps_what_trl_functions_read_across_the_wire():
    # the remote grader sends Sample.to_dict(); the server must rebuild the same sample, so a
    # TRL function behind it gets the completion ids and the row's format as in training
    from rft.judges.server import SampleIn, to_sample

    sent = Sample(
        "4",
        item={"prompt": "2+2?", "answer": "4"},
        completion_ids=[19, 4],
        conversational=True,
        completion_messages=[{"role": "assistant", "content": "4"}],
    )
    got = to_sample(SampleIn(**sent.to_dict()))
    assert got.completion_ids == [19, 4]
    assert got.is_conversational and got.trl_completion == [{"role": "assistant", "content": "4"}]
