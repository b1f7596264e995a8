"""score_model and label_model: against a fake OpenAI server on loopback, and a tiny local model."""

from __future__ import annotations

import pickle
import socket
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from graders.judges import LabelModel, ScoreModel, parse_label, parse_score
from rft.core import GraderSet, OutcomeKind, Sample
from rft.core.errors import ConfigError, GraderError, JudgeParseError
from rft.judges.client import close_all, get_endpoint
from rft.plugins import grader_set_from_config

# The fake judge replies with the last [[…]] of the prompt, so each completion below decides
# what the judge says; "{{sample.output_text}}" puts it into the prompt.
INPUT = [
    {"role": "developer", "content": "You grade answers to questions."},
    {"role": "user", "content": "Question: {{item.question}}\nAnswer: {{sample.output_text}}"},
]


@pytest.fixture(scope="module", autouse=True)
def _close_client_loop():
    yield
    close_all()


@pytest.fixture(scope="module")
def server():
    """A well-behaved fake judge server shared by the tests that need no failures."""
    with FakeOpenAI() as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def score_set(base_url: str, **settings) -> GraderSet:
    """A grader set with one score_model, written as OpenAI's grader JSON plus endpoint settings."""
    entry = {
        "type": "score_model",
        "name": "quality",
        "model": "judge",
        "input": INPUT,
        "range": [0, 10],
        "base_url": base_url,
        **settings,
    }
    return grader_set_from_config({"graders": [entry]})


def samples(*completions: str) -> list[Sample]:
    return [Sample(c, item={"question": "What is the capital of France?"}) for c in completions]


# -- the run the issue asks for: flaky endpoint, several batches ----------------------------


def test_judged_batches_complete_through_30_percent_failures():
    with FakeOpenAI(latency=0.005, failure_rate=0.3, seed=3) as server:
        gs = score_set(
            server.base_url,
            max_concurrency=4,
            max_retries=10,
            sampling_params={"temperature": 0, "max_completions_tokens": 64},
        )
        judge = gs["quality"].grader
        batches = [samples(*(f"Paris [[Score: {(b * 16 + i) % 11}]]" for i in range(16))) for b in range(3)]
        results = [judge.grade(batch) for batch in batches]  # each batch in its own event loop, like the engine
    outcomes = [o for batch in results for o in batch]
    assert [o.kind for o in outcomes] == [OutcomeKind.SCORE] * 48
    assert [o.score for o in outcomes] == [float(i % 11) for i in range(48)]  # the judge's scores, in order
    judge_fn: Any = judge.fn
    usage = get_endpoint(judge_fn.endpoint).usage
    assert server.failures > 0 and usage.retries == server.failures  # every 429/500 was retried, and counted
    assert sum(o.metrics["judge_attempts"] for o in outcomes) == server.requests
    assert server.max_in_flight <= 4  # never beyond max_concurrency, across batches and event loops
    sent = server.payloads[0]
    assert sent["max_tokens"] == 64 and "max_completions_tokens" not in sent  # OpenAI grader spelling translated
    assert sent["temperature"] == 0 and sent["model"] == "judge"
    assert sent["messages"][0]["role"] == "system"  # developer → system for servers that know no developer role
    assert sent["messages"][-1]["content"].endswith("End your reply with a line 'Score: <number from 0 to 10>'.")


def test_judge_through_the_scoring_engine_reports_token_metrics():
    from rft.scoring import make_executor

    with FakeOpenAI(latency=0.005) as server:
        gs = score_set(server.base_url, prices={"input": 1.0, "output": 2.0})
        with make_executor(gs, "local", inline=True) as ex:
            result = ex.score(samples("[[Score: 3]]", "[[Score: 9]]"))
    assert result.scores("quality") == [3.0, 9.0]
    m = result.metrics
    assert m["graders/quality/count/score"] == 2
    assert m["graders/quality/metrics/judge_prompt_tokens"] > 0
    # the fake's reply "Score: 3" is 2 completion tokens; at 2 USD per 1M that adds 4e-6 USD
    assert m["graders/quality/metrics/judge_completion_tokens"] == 2
    assert m["graders/quality/metrics/judge_cost_usd"] == pytest.approx(
        (m["graders/quality/metrics/judge_prompt_tokens"] * 1.0 + 2 * 2.0) / 1e6
    )


def test_judge_in_worker_processes_of_the_scoring_engine():
    # the grader crosses a process boundary (rebuilt from its spec) and opens its own connections there
    from rft.scoring import make_executor

    with FakeOpenAI() as server:
        gs = score_set(server.base_url)
        with make_executor(gs, "local", num_workers=1) as ex:
            result = ex.score(samples("[[Score: 4]]", "[[Score: 6]]", "[[Score: 8]]"))
    assert result.scores("quality") == [4.0, 6.0, 8.0]


def test_endpoint_down_fails_fast_as_infrastructure_and_stops_the_run():
    from rft.scoring import make_executor

    gs = score_set(f"http://127.0.0.1:{free_port()}/v1", breaker_failures=3, max_concurrency=4)
    first = gs["quality"].grader.grade(samples(*["[[Score: 1]]"] * 8))
    assert {o.kind for o in first} == {OutcomeKind.INFRASTRUCTURE}  # never a score, never a grader bug
    assert all(o.score is None for o in first)
    assert any("circuit open" in str(o.error) for o in first)
    with make_executor(gs, "local", inline=True, error_budget=0.5) as ex:
        with pytest.raises(GraderError) as info:
            ex.score(samples(*["[[Score: 1]]"] * 8))
    assert info.value.kind == "infrastructure" and info.value.grader == "quality"
    assert "circuit open" in str(info.value)


def test_spent_budget_stops_the_run_cleanly(server):
    from rft.scoring import make_executor

    # 1 USD per token: the first judgment alone spends the 1 USD budget
    gs = score_set(server.base_url, prices={"input": 1e6, "output": 1e6}, budget_usd=1)
    with make_executor(gs, "local", inline=True, error_budget=0.5) as ex:
        assert ex.score(samples("[[Score: 2]]")).scores("quality") == [2.0]
        with pytest.raises(GraderError) as info:
            ex.score(samples("[[Score: 3]]", "[[Score: 4]]"))
    assert info.value.kind == "infrastructure"
    assert "judge budget spent" in str(info.value) and "raise budget_usd" in str(info.value)


# -- replies that are not a score -----------------------------------------------------------


@pytest.mark.parametrize(
    "reply, kind, score",
    [
        ("Score: 7", OutcomeKind.SCORE, 7.0),
        ('{"score": 2.5, "reason": "vague"}', OutcomeKind.SCORE, 2.5),
        # prose without a score: unparseable, not 0
        ("I cannot judge this.", OutcomeKind.JUDGE_UNPARSEABLE, None),
        # a score outside range [0, 10] is clipped to it, as OpenAI documents
        ("Score: 11", OutcomeKind.SCORE, 10.0),
        # a reasoning model's thoughts are ignored; the number after them counts
        ("<think>maybe Score: 1</think>Score: 6", OutcomeKind.SCORE, 6.0),
    ],
)
def test_score_model_outcomes(server, reply, kind, score):
    (out,) = score_set(server.base_url)["quality"].grader.grade(samples(f"[[{reply}]]"))
    assert (out.kind, out.score) == (kind, score)
    if kind is OutcomeKind.JUDGE_UNPARSEABLE:
        assert "judge's" in str(out.error) and out.traceback is None  # the message is the diagnosis


@pytest.mark.parametrize(
    "reply, kind, score, label",
    [
        ("The tone is kind.\nLabel: polite", OutcomeKind.SCORE, 1.0, "polite"),  # a passing label
        ("RUDE", OutcomeKind.SCORE, 0.0, "rude"),  # a label that does not pass; case ignored
        ('{"label": "neutral"}', OutcomeKind.SCORE, 1.0, "neutral"),
        ("polite or rude, hard to say", OutcomeKind.JUDGE_UNPARSEABLE, None, None),  # two labels: ambiguous
        ('{"label": "angry"}', OutcomeKind.JUDGE_UNPARSEABLE, None, None),  # not one of the labels
    ],
)
def test_label_model_outcomes(server, reply, kind, score, label):
    gs = grader_set_from_config(
        {
            "graders": [
                {
                    "type": "label_model",
                    "name": "tone",
                    "model": "judge",
                    "base_url": server.base_url,
                    "input": [{"role": "user", "content": "Classify the tone: {{sample.output_text}}"}],
                    "labels": ["polite", "neutral", "rude"],
                    "passing_labels": ["polite", "neutral"],
                }
            ]
        }
    )
    (out,) = gs["tone"].grader.grade([Sample(f"[[{reply}]]")])
    assert (out.kind, out.score) == (kind, score)
    if label:
        assert str(out.reason).startswith(f"label: {label}")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Score: 8", 8.0),
        ("score = 0.5", 0.5),
        ("**Rating:** 3", 3.0),  # markdown around the number
        ("First Score: 2, on reflection Score: 4", 4.0),  # the last one is the verdict
        ('```json\n{"result": 1}\n```', 1.0),
        ("9", 9.0),
    ],
)
def test_parse_score(text, expected):
    assert parse_score(text, 0, 10)[0] == expected


@pytest.mark.parametrize("text", ["", "great answer", "Score: ten", '{"score": "high"}'])
def test_parse_score_refuses(text):
    with pytest.raises(JudgeParseError, match="no score"):
        parse_score(text, 0, 10)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Label: incorrect", "incorrect"),
        ("correct", "correct"),
        ("The answer is incorrect.", "incorrect"),  # 'correct' inside 'incorrect' is not a second label
        ("Classification: `correct`", "correct"),
    ],
)
def test_parse_label(text, expected):
    assert parse_label(text, ["correct", "incorrect"])[0] == expected


# -- templates and configuration ------------------------------------------------------------


def test_template_reads_the_row_and_the_completion(server):
    gs = grader_set_from_config(
        {
            "graders": [
                {
                    "type": "score_model",
                    "name": "json_judge",
                    "model": "judge",
                    "base_url": server.base_url,
                    "input": [{"role": "user", "content": "Ref {{item.answer}} vs {{sample.output_json.answer}}"}],
                }
            ]
        }
    )
    judge = gs["json_judge"].grader
    outs = judge.grade(
        [Sample('{"answer": "[[Score: 1]]"}', item={"answer": "x"}), Sample("no json", item={"answer": "x"})]
    )
    assert (outs[0].kind, outs[0].score) == (OutcomeKind.SCORE, 1.0)
    # the completion lacks the JSON the template reads: the model's miss, the low end of the range, with why
    assert (outs[1].kind, outs[1].score) == (OutcomeKind.SCORE, 0.0)
    assert "needs JSON in the completion" in str(outs[1].reason)
    # the row's columns are known before any call, so missing data fails at load time
    with pytest.raises(ConfigError, match="needs column 'answer'"):
        gs.check_inputs(["question"])


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"model": None}, "`model` is missing"),
        ({"range": [1, 1]}, "`range` must be [low, high] with low < high"),
        ({"bse_url": "http://h/v1"}, "did you mean 'base_url'"),
        ({"backend": "vllm"}, "unknown backend 'vllm'"),
        ({"base_url": "localhost:8000"}, "must be an http(s) URL"),
        ({"input": [{"role": "judge", "content": "x"}]}, "role must be one of"),
        ({"input": [{"role": "user", "content": "{{item}}"}]}, "needs a column"),
        ({"backend": "transformers", "model": "/no/such/model"}, "is not one"),
    ],
)
def test_config_errors_name_the_entry_and_the_fix(monkeypatch, entry, message):
    monkeypatch.delenv("RFT_JUDGE_MODEL", raising=False)
    base = {"type": "score_model", "name": "q", "model": "judge", "input": INPUT, "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(ConfigError) as info:
        grader_set_from_config({"graders": [{**base, **entry}]}, file="graders.yaml")
    assert message in str(info.value) and "graders.yaml: graders[0]" in str(info.value)


ENDPOINT_ENTRY = {
    "base_url": "http://h:1/v1",
    "api_key": "sk-x",
    "max_concurrency": 3,
    "requests_per_minute": 60,
    "tokens_per_minute": 1000,
    "request_timeout": 5.0,
    "max_retries": 1,
    "deadline": 9.0,
    "breaker_failures": 2,
    "breaker_cooldown": 1.0,
    "prices": {"input": 1.0, "output": 2.0},
    "budget_usd": 3.0,
    "budget_tokens": 100,
}


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "score_model", "range": [0, 5]},
        {"type": "label_model", "labels": ["good", "bad"], "passing_labels": ["good"]},
    ],
)
def test_both_judges_take_every_endpoint_setting_as_an_entry_key(entry):
    # the judges declare the shared settings once; each grader-entry key must still reach the endpoint
    gs = grader_set_from_config(
        {"graders": [{**entry, "name": "j", "model": "judge", "input": INPUT, **ENDPOINT_ENTRY}]}
    )
    judge: Any = gs.entries[0].grader.fn
    ep = judge.endpoint
    got = {k: getattr(ep, k) for k in ENDPOINT_ENTRY if k != "prices"}
    assert got == {k: v for k, v in ENDPOINT_ENTRY.items() if k != "prices"}
    assert (ep.price_input, ep.price_output) == (1.0, 2.0)
    assert judge.name == "j"


def test_label_model_passing_labels_must_be_labels():
    with pytest.raises(ConfigError, match="passing label 'god' is not in `labels`; did you mean 'good'"):
        LabelModel(input=INPUT, model="m", base_url="http://h/v1", labels=["good", "bad"], passing_labels=["god"])


def test_judge_pickles_without_a_connection_and_still_works(server):
    judge = score_set(server.base_url)["quality"].grader
    judge.grade(samples("[[Score: 1]]"))  # opens connections in this process
    clone = pickle.loads(pickle.dumps(judge))
    (out,) = clone.grade(samples("[[Score: 5]]"))
    assert out.score == 5.0
    assert "_client" not in vars(clone.fn)


# -- a local transformers judge ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rft.models.resolve import create_tiny_model

    return str(create_tiny_model(tmp_path_factory.mktemp("tiny-judge")))


def test_local_judge_scores_by_candidate_probabilities(tiny_model):
    import graders.judge_local as judge_local

    score = ScoreModel(input=INPUT, model=tiny_model, backend="transformers", range=[0, 10], batch_size=64)
    label = LabelModel(
        input=INPUT, model=tiny_model, backend="transformers", labels=["yes", "no"], passing_labels=["yes"]
    )
    gs = GraderSet([score, label])
    batch = samples("Paris", "Lyon", "The capital is Paris.", "I do not know", "42", "")
    score_outs = gs.entries[0].grader.grade(batch)
    label_outs = gs.entries[1].grader.grade(batch)
    # a random model still gives a readable answer: a probability over the allowed answers
    assert all(o.kind is OutcomeKind.SCORE and o.score is not None and 0.0 <= o.score <= 10.0 for o in score_outs)
    assert all(o.kind is OutcomeKind.SCORE and o.score in (0.0, 1.0) for o in label_outs)
    assert all(0.0 < o.metrics["judge_confidence"] <= 1.0 for o in score_outs + label_outs)
    # batching (padding) does not change a sample's score
    alone = [gs.entries[0].grader.grade([s])[0].score for s in batch[:3]]
    assert alone == pytest.approx([o.score for o in score_outs[:3]], abs=1e-4)
    # one model in the process, shared by both judges, fed in batches: one pass per judgment would be
    # 6 (score) + 3 (alone) + 6 (label) = 15 passes; batched, 6 score judgments × 11 candidates need 2
    model = judge_local.local_model(tiny_model, None, 64)
    assert len([k for k in judge_local._models if k[0] == model.path]) == 1
    assert model.forward_passes < 15
