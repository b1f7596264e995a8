"""The SFT-vs-RFT advisor: statistics, grader checks, the probe, decision rules, signals, configs."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest
from helpers import ADVISOR_GRADERS_PY

from rft.advise import thresholds
from rft.advise.advisor import advise
from rft.advise.checks import GameableOutput, Verifiability, check_verifiability
from rft.advise.probe import ProbeOptions, ProbeResult, pass_at_k, run_probe
from rft.advise.rules import decide
from rft.advise.stats import dataset_stats
from rft.advise.writer import build_config, num_generations, write_config
from rft.core import GraderSet
from rft.core.errors import ConfigError, PluginError
from rft.data import to_example
from rft.plugins import get_plugin_manager, grader_set_from_config

# ---------------------------------------------------------------------------
# fixtures: graders in a plugin file, synthetic datasets with known answers
# ---------------------------------------------------------------------------

GRADERS_PY = (
    ADVISOR_GRADERS_PY
    + '''

@rft.grader(range=(0.0, 1.0))
def word_length(completion: str, length: int) -> float:
    """1.0 for a single alphabetic word of exactly `length` letters (verifiable without a reference)."""
    word = completion.strip()
    return float(word.isalpha() and len(word) == int(length))


@rft.grader(range=(0.0, 1.0))
def no_banned_words(completion: str) -> float:
    """1.0 unless a banned word appears: gameable by saying nothing."""
    return float("darn" not in completion.lower())


@rft.grader(range=(0.0, 1.0))
def length_parity(completion: str) -> float:
    """Varies from sample to sample even for a random model."""
    return float(len(completion) % 2 == 0)


@rft.hookimpl
def rft_register_graders(register):
    for g in (number_match, word_length, length_bonus, no_banned_words, length_parity):
        register(g)
'''
)


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("advisor_plugins") / "advisor_graders.py"
    path.write_text(GRADERS_PY)
    return path


def graders(plugin_file: Path, *names: str) -> GraderSet:
    return grader_set_from_config({"graders": [{"name": n} for n in names], "plugins": [str(plugin_file)]})


def classification_rows(n: int = 2000) -> list[dict]:
    rng = random.Random(0)
    words = {
        "positive": ["great", "lovely", "superb"],
        "negative": ["awful", "bad", "dull"],
        "neutral": ["ok", "fine", "average"],
    }
    rows = []
    for i in range(n):
        label = rng.choice(sorted(words))
        text = f"Review {i}: the {rng.choice(['film', 'meal', 'hotel', 'book'])} was {rng.choice(words[label])}."
        rows.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": label}]})
    return rows


def math_rows(n: int = 200, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        rows.append({"prompt": f"What is {a} + {b}? Answer with the number.", "answer": str(a + b)})
    return rows


def word_rows(n: int = 300) -> list[dict]:
    rng = random.Random(1)
    topics = ["animal", "color", "city", "fruit", "tool", "verb", "river", "name"]
    return [
        {"prompt": f"Write one {rng.choice(topics)} word with exactly {k} letters ({i}).", "length": k}
        for i, k in enumerate(rng.randint(3, 9) for _ in range(n))
    ]


# ---------------------------------------------------------------------------
# the four synthetic datasets of the issue
# ---------------------------------------------------------------------------


def test_labeled_classification_2000_rows_recommends_sft():
    a = advise(classification_rows(2000))
    # more than SFT_MIN_ROWS labeled rows: the Fireworks tree says SFT, whatever else holds
    assert (a.recommendation, a.branch) == ("sft", "labeled/large")
    labels = a.stats.labels
    assert labels.is_classification and labels.cardinality == 3
    # three balanced labels: entropy close to log2(3) = 1.585 bits
    assert labels.entropy_bits is not None and 1.55 < labels.entropy_bits <= 1.585
    assert a.steps[0].numbers["labeled_rows"] == 2000 and a.steps[0].numbers["SFT_MIN_ROWS"] == 1000


def test_math_200_rows_with_math_grader_recommends_rft(plugin_file):
    a = advise(math_rows(200), grader_set=graders(plugin_file, "number_match"))
    # 200 labeled rows is inside the 100–1000 band, and every prompt is arithmetic: reasoning helps
    assert a.recommendation == "rft"
    assert a.branch == "labeled/medium/reasoning"
    assert a.stats.reasoning.math_prompt_share == 1.0
    v = a.verifiability
    # the grader agrees with every reference and pays nothing for degenerate outputs
    assert v.verifiable and v.reference is not None and v.reference.mean_reward == 1.0 and not v.gameable
    assert {d.kind: d.mean_reward for d in v.degenerate}["empty"] == 0.0


def test_unlabeled_verifiable_300_rows_recommends_rft(plugin_file):
    a = advise(word_rows(300), grader_set=graders(plugin_file, "word_length"))
    # no reference outputs at all, but the grader checks outputs on its own
    assert (a.recommendation, a.branch) == ("rft", "unlabeled/verifiable")
    assert a.stats.references.share == 0.0
    assert a.verifiability.reference is None  # nothing to grade as a reference
    kinds = [d.kind for d in a.verifiability.degenerate]
    assert kinds == ["empty", "prompt_copy", "padding"]  # no constant answer without references


@pytest.mark.parametrize(
    ("n", "expected", "branch"),
    [
        (300, "rft_with_judge", "unlabeled/not_verifiable/judge"),  # enough prompts to train against a judge
        (50, "collect_labels", "unlabeled/not_verifiable/few_rows"),  # too few prompts: label first
    ],
)
def test_unlabeled_without_grader(n, expected, branch):
    a = advise(word_rows(n))
    assert (a.recommendation, a.branch) == (expected, branch)
    assert a.steps[0].numbers["JUDGE_MIN_ROWS"] == thresholds.JUDGE_MIN_ROWS


# ---------------------------------------------------------------------------
# grader checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grader", "kind", "score"),
    [
        ("length_bonus", "padding", 1.0),  # ≈4000 characters of filler earns the full length bonus
        ("no_banned_words", "empty", 1.0),  # saying nothing never says a banned word
    ],
)
def test_gameable_grader_is_flagged_with_output_and_score(plugin_file, grader, kind, score):
    v = check_verifiability(math_rows(120), graders(plugin_file, grader))
    flagged = {g.kind: g for g in v.gameable_outputs}
    assert v.gameable and not v.verifiable
    assert flagged[kind].score == score
    if kind == "padding":
        assert flagged[kind].output.startswith("Let me think step by step.")
    assert any(p.startswith(f"gameable: the {kind} output") for p in v.problems)


def test_gameable_grader_downgrades_rft_to_sft(plugin_file):
    a = advise(math_rows(200), grader_set=graders(plugin_file, "no_banned_words"))
    # the tree says rft, but the grader pays the empty output: train on the labels instead
    assert [s.rule for s in a.steps] == ["labeled/medium/reasoning", "graders/unusable"]
    assert a.recommendation == "sft"
    assert a.steps[1].numbers["degenerate_score"] == 1.0


def test_constant_answer_is_not_gameable_when_it_is_the_majority_label(plugin_file):
    # 60 % of references are "1": an exact grader legitimately pays the constant answer 0.6,
    # which is below its threshold (0.6 + CONSTANT_ANSWER_MARGIN)
    rows = [{"prompt": f"Parity of {i}?", "answer": "1" if i % 5 < 3 else "0"} for i in range(100)]
    v = check_verifiability(rows, graders(plugin_file, "number_match"))
    const = next(d for d in v.degenerate if d.kind == "constant")
    assert const.output == "1" and const.mean_reward == 0.6 and const.constant_share == 0.6
    assert not const.gameable and v.verifiable


def test_grader_that_needs_a_missing_column_is_reported(plugin_file):
    v = check_verifiability(math_rows(10), graders(plugin_file, "word_length"))
    assert v.columns_ok is False and not v.verifiable
    assert "needs column 'length'" in (v.columns_error or "")


def test_references_that_fail_the_grader_are_reported(plugin_file):
    rows = [{"prompt": f"What is {i} + 1?", "answer": "unknown"} for i in range(30)]
    v = check_verifiability(rows, graders(plugin_file, "number_match"))
    # the grader wants a number and no reference has one: grader and data disagree
    assert v.reference is not None and v.reference.mean_reward == 0.0 and not v.reference.ok and not v.verifiable


def test_grader_errors_are_reported_not_scored_zero(plugin_file, tmp_path):
    bad = tmp_path / "bad_graders.py"
    bad.write_text(
        textwrap.dedent("""
        import rft

        @rft.grader
        def picky(completion: str) -> float:
            if not completion:
                raise ValueError("empty completion")
            return 1.0

        @rft.hookimpl
        def rft_register_graders(register):
            register(picky)
    """)
    )
    gs = grader_set_from_config({"graders": [{"name": "picky"}], "plugins": [str(bad)]})
    v = check_verifiability(math_rows(20), gs)
    empty = next(d for d in v.degenerate if d.kind == "empty")
    assert empty.errors == 20 and empty.mean_reward is None and not empty.gameable
    assert "empty completion" in (empty.first_error or "")


# ---------------------------------------------------------------------------
# dataset statistics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}, "hello"),
        ({"messages": [{"role": "user", "content": "hi"}]}, None),  # a prompt only
        ({"prompt": "2+2?", "answer": 4}, "4"),
        ({"prompt": "2+2?", "label": "four"}, "four"),
        ({"prompt": "2+2?", "answer": "  "}, None),  # blank is no reference
        ({"prompt": "2+2?", "completion": "It is 4.", "answer": "4"}, "It is 4."),  # as training's to_example
    ],
)
def test_the_advisor_counts_the_references_training_reads(row, expected):
    # one row model: the advisor counts exactly the references the loader gives training
    assert to_example(row).reference == expected
    assert dataset_stats([row]).references.rows == (expected is not None)


def test_structured_outputs_are_counted():
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    rows = [
        {"messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [call]}]},
        {"prompt": "json please", "answer": '{"a": 1}'},
        {"prompt": "a number", "answer": "42"},  # valid JSON, but a scalar is not structured
        {"prompt": "text", "answer": "plain words"},
    ]
    s = dataset_stats(rows).structured
    assert (s.tool_call_share, s.json_share) == (0.25, 0.25)


def test_duplicates_exact_and_near():
    base = "Summarize the following report about quarterly revenue growth in the northern region stores"
    rows = [
        {"prompt": base, "answer": "a"},
        {"prompt": "  " + base.upper().replace(" ", "\n"), "answer": "b"},  # exact after normalization (case, spacing)
        {"prompt": base + " please", "answer": "c"},  # one extra word: a near duplicate
        {"prompt": "What is 7 + 7?", "answer": "14"},  # short templated prompts differing in numbers
        {"prompt": "What is 1 + 5?", "answer": "6"},  # are not near duplicates of each other
    ]
    d = dataset_stats(rows).duplicates
    assert d.exact == 1 and d.exact_share == 0.2
    # 4 distinct prompts; the base prompt and its "please" variant are near duplicates
    assert d.near_checked_rows == 4 and d.near_share == 0.5


def test_reasoning_indicators():
    worked = "Step 1: add the tens.\nStep 2: add the ones.\nTherefore the answer is 19."
    rows = [{"prompt": "Tell me a story", "answer": worked} for _ in range(4)] + [{"prompt": "Hi", "answer": "Hello"}]
    r = dataset_stats(rows).reasoning
    assert r.step_marker_share == 0.8 and r.math_prompt_share == 0.0
    assert r.indicators == ["step_markers"] and r.helps


def test_eval_coverage_and_leakage():
    train = [{"prompt": f"Review {i}", "answer": "pos" if i % 2 else "neg"} for i in range(40)]
    ev = [{"prompt": "Review 1", "answer": "pos"}, {"prompt": "New review", "answer": "mixed"}]
    e = dataset_stats(train, ev).eval
    # one eval prompt is in train (leakage); one eval label never occurs in train
    assert e is not None and e.rows == 2 and e.prompt_overlap_share == 0.5
    assert e.label_coverage == 0.5 and e.labels_missing_from_train == ["mixed"]


# ---------------------------------------------------------------------------
# decision rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "math_prompts", "expected", "branch"),
    [
        (500, False, "sft", "labeled/medium/no_reasoning"),  # 100–1000 rows, nothing says reasoning helps
        (500, True, "rft", "labeled/medium/reasoning"),
        (60, False, "rft", "labeled/small"),  # too few demonstrations for SFT
        (999, True, "rft", "labeled/medium/reasoning"),
        (1000, True, "sft", "labeled/large"),  # ~1000+ labeled rows: SFT even for math (the addition example)
    ],
)
def test_fireworks_tree_on_labeled_data(n, math_prompts, expected, branch):
    if math_prompts:
        rows = math_rows(n)
    else:
        rows = [{"prompt": f"Translate sentence number {i} into French.", "answer": f"Phrase {i}"} for i in range(n)]
    steps = decide(dataset_stats(rows), Verifiability(verifiable=False, configured=False))
    assert (steps[-1].recommendation, steps[-1].rule) == (expected, branch)


@pytest.mark.parametrize(
    ("pass_at_1", "expected", "rule"),
    [
        (0.0, "sft_then_rft", "probe/low_pass"),  # no reward to learn from: warm start first
        (0.04, "sft_then_rft", "probe/low_pass"),  # just under PROBE_LOW_PASS = 0.05
        (0.3, "rft", "probe/learnable"),  # inside the band: RFT confirmed
        (0.95, "none", "probe/high_pass"),  # already solved
    ],
)
def test_probe_refines_the_tree(pass_at_1, expected, rule):
    stats = dataset_stats(math_rows(200))
    probe = ProbeResult(
        pass_at_1=pass_at_1, pass_at_k=min(1.0, pass_at_1 * 4), zero_variance_share=0.5, rows=16, samples_per_row=4
    )
    steps = decide(stats, Verifiability(verifiable=True, configured=True), probe)
    assert steps[0].rule == "labeled/medium/reasoning"
    assert (steps[-1].recommendation, steps[-1].rule) == (expected, rule)
    assert steps[-1].numbers["pass_at_1"] == pass_at_1 and steps[-1].numbers["PROBE_LOW_PASS"] == 0.05


def test_low_pass_on_unlabeled_data_means_collect_demonstrations():
    stats = dataset_stats(word_rows(300))
    probe = ProbeResult(pass_at_1=0.0, pass_at_k=0.0, zero_variance_share=1.0, rows=8, samples_per_row=4)
    steps = decide(stats, Verifiability(verifiable=True, configured=True), probe)
    assert [s.rule for s in steps] == ["unlabeled/verifiable", "probe/low_pass"]
    assert steps[-1].recommendation == "collect_labels"


def test_low_pass_with_a_few_references_among_many_prompts_warms_up_on_them():
    # the flagship's shape: 32 rows with a reference, 480 with a verifier only (6% labeled)
    rows = word_rows(512)
    for row in rows[:32]:
        row["answer"] = "x" * row["length"]
    probe = ProbeResult(pass_at_1=0.0, pass_at_k=0.0, zero_variance_share=1.0, rows=8, samples_per_row=4)
    steps = decide(dataset_stats(rows), Verifiability(verifiable=True, configured=True), probe)
    assert [s.rule for s in steps] == ["unlabeled/verifiable", "probe/low_pass"]
    assert steps[-1].recommendation == "sft_then_rft"
    assert steps[-1].numbers["reference_rows"] == 32 and "the 32 rows with a reference" in steps[-1].because


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 0, 1, 0.0),
        (4, 1, 1, 0.25),  # pass@1 is the pass rate
        (4, 1, 4, 1.0),  # one success among 4 samples: pass@4 is certain
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
    ],
)
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


# ---------------------------------------------------------------------------
# the probe on a tiny random model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rft.models.resolve import create_tiny_model, load_model, resolve_model

    path = create_tiny_model(tmp_path_factory.mktemp("advisor_tiny") / "tiny")
    model, tok = load_model(resolve_model(str(path)))
    return path, model, tok


def test_probe_zero_signal_on_a_random_model(plugin_file, tiny):
    path, model, tok = tiny
    seen = []
    opts = ProbeOptions(model=str(path), rows=4, samples=3, max_new_tokens=6)
    p = run_probe(
        math_rows(20),
        graders(plugin_file, "number_match"),
        opts,
        model=model,
        tokenizer=tok,
        progress=lambda done, total: seen.append((done, total)),
    )
    # a random tiny model never writes the sum: every group scores 0 on every sample
    assert (p.rows, p.samples_per_row) == (4, 3)
    assert p.pass_at_1 == 0.0 and p.pass_at_k == 0.0 and p.mean_reward == 0.0
    assert p.zero_variance_share == 1.0
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)  # progress counts completions


def test_probe_measures_variance_when_the_reward_varies(plugin_file, tiny):
    path, model, tok = tiny
    opts = ProbeOptions(model=str(path), rows=4, samples=4, max_new_tokens=6, pass_score=1.0)
    p = run_probe(math_rows(20), graders(plugin_file, "length_parity"), opts, model=model, tokenizer=tok)
    # completions of random length: even/odd lengths mix inside groups
    assert p.zero_variance_share is not None and p.pass_at_1 is not None and p.pass_at_k is not None
    assert p.zero_variance_share < 1.0 and 0.0 < p.pass_at_1 < 1.0
    assert p.pass_at_k >= p.pass_at_1


def test_advise_with_zero_signal_probe_recommends_sft_then_rft(plugin_file, tiny):
    path, model, tok = tiny
    a = advise(
        math_rows(200),
        grader_set=graders(plugin_file, "number_match"),
        probe=ProbeOptions(model=str(path), rows=3, samples=2, max_new_tokens=4),
        probe_model=model,
        probe_tokenizer=tok,
    )
    assert a.branch == "labeled/medium/reasoning > probe/low_pass"
    assert a.recommendation == "sft_then_rft"
    assert any("no GRPO signal" in w for w in a.warnings)


def test_probe_needs_graders():
    with pytest.raises(ConfigError, match="--graders"):
        advise(math_rows(10), probe=ProbeOptions(model="tiny"))


# ---------------------------------------------------------------------------
# the rft_advisor_signals hook
# ---------------------------------------------------------------------------

SIGNALS_PY = """
import rft


@rft.hookimpl
def rft_advisor_signals(rows, stats, probe):
    share = sum("secret" in str(r.get("prompt", "")) for r in rows) / len(rows)
    vote = "collect_labels" if share > 0.5 else None
    return [{"name": "secret_share", "value": share, "reason": "prompts mention secrets", "vote": vote},
            {"name": "probe_ran", "value": probe is not None, "reason": "whether a probe ran"}]
"""


def test_signals_hook_contributes_and_votes(tmp_path):
    plugin = tmp_path / "secret_signals.py"
    plugin.write_text(SIGNALS_PY)
    pm = get_plugin_manager([str(plugin)])
    rows = [{"prompt": f"a secret {i}", "answer": f"x{i}"} for i in range(1200)]
    a = advise(rows, pm=pm)
    by_name = {s.name: s for s in a.signals}
    assert by_name["secret_share"].value == 1.0 and by_name["secret_share"].plugin == str(plugin.resolve())
    assert by_name["probe_ran"].value is False
    # the tree says sft (1200 labeled rows); the plugin's unanimous vote decides last
    assert a.branch == "labeled/large > signals/vote" and a.recommendation == "collect_labels"
    assert any(r.startswith("signal ") and "secret_share" in r for r in a.reasons)


def test_signals_without_votes_do_not_change_the_recommendation(tmp_path):
    plugin = tmp_path / "quiet_signals.py"
    plugin.write_text(SIGNALS_PY)
    a = advise([{"prompt": f"plain {i}", "answer": "y"} for i in range(1200)], pm=get_plugin_manager([str(plugin)]))
    assert a.recommendation == "sft" and len(a.signals) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return {'name': 'x'}", "must return a list"),
        ("return [{'value': 1, 'reason': 'r'}]", "must be a dict with a `name`"),
        ("return [{'name': 'x', 'value': 1, 'reason': 'r', 'vote': 'maybe'}]", "vote 'maybe' is not one of"),
        ("raise RuntimeError('boom')", "failed in rft_advisor_signals: RuntimeError: boom"),
    ],
)
def test_bad_signals_name_the_plugin(tmp_path, body, message):
    plugin = tmp_path / "bad_signals.py"
    plugin.write_text(f"import rft\n\n@rft.hookimpl\ndef rft_advisor_signals(rows):\n    {body}\n")
    with pytest.raises(PluginError, match="bad_signals.py") as err:
        advise([{"prompt": "p", "answer": "a"}], pm=get_plugin_manager([str(plugin)]))
    assert message in str(err.value)


# ---------------------------------------------------------------------------
# the starting config
# ---------------------------------------------------------------------------


def _advice(rows, plugin_file=None, grader=None, **inputs):
    gs = graders(plugin_file, grader) if grader else None
    return advise(rows, grader_set=gs, inputs={"data": "data.jsonl", **inputs}), gs


@pytest.mark.parametrize(
    ("make_rows", "grader", "stages"),
    [
        (lambda: classification_rows(1500), None, ["sft"]),
        (lambda: math_rows(200), "number_match", ["rft"]),
    ],
)
def test_build_config_follows_the_recommendation(tmp_path, plugin_file, make_rows, grader, stages):
    from rft.config.run import parse_config

    gfile = None
    if grader:
        gfile = tmp_path / "graders.yaml"
        gfile.write_text(f"plugins: [{plugin_file}]\ngraders:\n  - name: {grader}\n")
    a, gs = _advice(make_rows(), plugin_file, grader, graders=str(gfile) if gfile else None)
    out = tmp_path / "configs" / "run.yaml"
    cfg = build_config(a, out, grader_set=gs)
    assert list(cfg["stages"]) == stages
    if grader:
        assert cfg["graders"] == "../graders.yaml"  # relative to the config's folder
        rft = cfg["stages"]["rft"]
        assert rft["trl"]["per_device_train_batch_size"] % rft["num_generations"] == 0
    parse_config(cfg, source=str(out), base_dir=out.parent, check_trl=False)  # valid run config


def test_config_without_graders_uses_exact_match_on_answer(tmp_path):
    a, _ = _advice(math_rows(50))  # labeled/small → rft, no --graders, rows have `answer`
    cfg = build_config(a, tmp_path / "run.yaml")
    assert a.recommendation == "rft" and cfg["graders"] == [{"name": "exact_match", "weight": 1.0}]


def test_no_config_for_collect_labels(tmp_path):
    a, _ = _advice(word_rows(20))
    assert a.recommendation == "collect_labels"
    with pytest.raises(ConfigError, match="collect reference outputs"):
        write_config(a, tmp_path / "run.yaml")
    assert not (tmp_path / "run.yaml").exists()


@pytest.mark.parametrize(
    ("pass_at_1", "groups"),
    [
        (None, 8),  # no probe: the usual GRPO group
        (0.5, 4),  # one sample in 2 passes: the minimum group already holds a pass half the time
        (0.1, 7),  # 1 - 0.9**7 = 0.52 ≥ 1/2
        (0.01, 16),  # capped
    ],
)
def test_group_size_from_the_probe(pass_at_1, groups):
    assert num_generations(None if pass_at_1 is None else ProbeResult(pass_at_1=pass_at_1)) == groups


def test_probe_is_ignored_when_the_grader_is_gameable():
    stats = dataset_stats(math_rows(200))
    probe = ProbeResult(pass_at_1=0.97, pass_at_k=1.0, zero_variance_share=0.9, rows=16, samples_per_row=4)
    verif = Verifiability(
        verifiable=False,
        configured=True,
        gameable_outputs=[GameableOutput(kind="empty", output="", score=1.0, relative=1.0)],
    )
    steps = decide(stats, verif, probe)
    # a gameable grader passes everything, so "the base model already passes 97 %" means nothing
    assert [s.rule for s in steps] == ["labeled/medium/reasoning", "graders/unusable"]
