"""OpenAI's grader JSON accepted as is: string_check, text_similarity, multi, templates."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from rft.core import OutcomeKind, Sample
from rft.core.errors import ConfigError
from rft.core.templates import Template, TemplateError
from rft.plugins import grader_set_from_config, grader_set_from_file

ROOT = Path(__file__).resolve().parents[1]


def grade_one(spec: dict, completion: str, **item):
    """Load one OpenAI grader object as a grader-set file would, and grade one sample."""
    gs = grader_set_from_config(spec)
    entry = gs.entries[0]
    return entry, entry.grader.grade([Sample(completion, item=item)])[0]


def string_check(operation: str, **extra) -> dict:
    return {
        "type": "string_check",
        "name": "check",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": operation,
        **extra,
    }


# -- string_check: OpenAI's semantics ------------------------------------------------


@pytest.mark.parametrize(
    "operation, output, reference, expected",
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),  # eq is exact, case included
        ("eq", "Paris ", "Paris", 0.0),  # ... and whitespace included
        ("ne", "Lyon", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "It is Paris.", "Paris", 1.0),  # like: contains
        ("like", "It is PARIS.", "Paris", 0.0),  # like is case-SENSITIVE
        ("ilike", "It is PARIS.", "Paris", 1.0),  # ilike: contains, any case
        ("ilike", "It is Lyon.", "Paris", 0.0),
    ],
)
def test_string_check_operations(operation, output, reference, expected):
    entry, out = grade_one(string_check(operation), output, reference=reference)
    assert out.score == expected


def test_openai_name_becomes_the_id_and_type_the_grader():
    entry, _ = grade_one(string_check("eq"), "x", reference="x")
    assert (entry.id, entry.grader.name, entry.grader.plugin) == ("check", "string_check", "graders.strings")


def test_string_check_on_a_json_field_of_the_output():
    spec = {
        "type": "string_check",
        "name": "city",
        "input": "{{sample.output_json.city}}",
        "reference": "{{item.city}}",
        "operation": "eq",
    }
    gs = grader_set_from_config(spec)
    ok, wrong, no_json = gs.entries[0].grader.grade(
        [
            Sample('{"city": "Paris"}', item={"city": "Paris"}),
            Sample('```json\n{"city": "Lyon"}\n```', item={"city": "Paris"}),
            Sample("Paris", item={"city": "Paris"}),
        ]
    )
    assert (ok.score, wrong.score) == (1.0, 0.0)
    # the model gave no JSON: its output is wrong (score 0, reason says why), not the grader
    assert (no_json.kind, no_json.score) == (OutcomeKind.SCORE, 0.0)
    assert "needs JSON in the completion" in no_json.reason
    # JSON inside a code fence is not output_json either (OpenAI: only a whole-JSON output)
    assert "not JSON as a whole" in wrong.reason


def test_a_column_missing_from_the_row_is_an_error_naming_template_and_key():
    _, out = grade_one(string_check("eq"), "Paris", question="?")
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "'{{item.reference}}'" in out.error and "'item.reference'" in out.error


def test_template_columns_are_checked_at_load():
    gs = grader_set_from_config(string_check("eq"))
    with pytest.raises(ConfigError, match="needs column 'reference'"):
        gs.check_inputs(["prompt", "answer"], source="rows.jsonl")


@pytest.mark.parametrize(
    "spec, message",
    [
        (string_check("contains"), "unknown operation 'contains'"),
        (string_check("eq", reference="{{item}}"), "needs a column"),
        (string_check("eq", input="{{sample.output}}"), "did you mean 'output_text'"),
        (string_check("eq", input="{{answer}}"), "must start with `item.`"),
        (
            {
                "type": "text_similarity",
                "name": "s",
                "input": "{{sample.output_text}}",
                "reference": "{{item.a}}",
                "evaluation_metric": "rouge",
            },
            "did you mean",
        ),
        (
            {"type": "text_similarity", "name": "s", "reference": "{{item.a}}", "pass_threshold": "high"},
            "pass_threshold must be a number",
        ),
        ({"type": "string_chek", "name": "s"}, "did you mean 'string_check'"),
    ],
)
def test_invalid_openai_graders_fail_at_load(spec, message):
    with pytest.raises(ConfigError, match=message):
        grader_set_from_config(spec)


# -- templates -------------------------------------------------------------------------

ITEM = {"q": "2+2?", "meta": {"city": "Paris", "tags": ["a", "b"]}, "n": 4}


@pytest.mark.parametrize(
    "template, completion, expected",
    [
        ("{{item.q}}", "", "2+2?"),
        ("{{ item.q }}", "", "2+2?"),  # spaces inside braces, as OpenAI's examples write them
        ("{{item.meta.city}}", "", "Paris"),  # nested
        ("{{item.meta.tags.1}}", "", "b"),  # list element
        ("n={{item.n}}", "", "n=4"),  # non-strings inside text as JSON
        ("{{item.meta.tags}}", "", '["a", "b"]'),
        ("Q: {{item.q}} A: {{sample.output_text}}", "4", "Q: 2+2? A: 4"),
        ("{{sample.output_json.answer}}", '{"answer": 4}', "4"),
        ("{{sample.output_json.steps.0}}", '{"steps": ["add"]}', "add"),
        ("{{sample.output_json.steps[0]}}", '\n{"steps": ["add"]}\n', "add"),  # whitespace around is fine
        ("{{sample.output_tools.0.function.name}}", '<tool_call>{"name": "f", "arguments": {}}</tool_call>', "f"),
        ("{{sample.output_tools[0].function.name}}", '<tool_call>{"name": "f", "arguments": {}}</tool_call>', "f"),
        ("{{ item.meta.tags[-1] }}", "", "b"),
        ('{{item["q"]}}', "", "2+2?"),
    ],
)
def test_template_rendering(template, completion, expected):
    assert Template(template).render(Sample(completion, item=ITEM)) == expected


def test_a_single_placeholder_gives_the_raw_value():
    s = Sample('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>', item=ITEM)
    # arguments are the JSON string, as in Chat Completions
    assert Template("{{sample.output_tools}}").value(s) == [
        {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    ]
    assert Template("{{item.n}}").value(s) == 4


@pytest.mark.parametrize(
    "template, completion, source, key",
    [
        ("{{item.answer}}", "", "item", "item.answer"),
        ("{{item.meta.country}}", "", "item", "item.meta.country"),
        ("{{item.meta.tags.5}}", "", "item", "item.meta.tags.5"),
        ("{{item.meta.tags[5]}}", "", "item", "item.meta.tags[5]"),
        ("{{sample.output_tools[0].function.name}}", "no call", "sample", "sample.output_tools[0].function.name"),
        ("{{sample.output_json.answer}}", "no JSON", "sample", "sample.output_json.answer"),
        ("{{sample.output_json.answer}}", '{"result": 4}', "sample", "sample.output_json.answer"),
    ],
)
def test_template_missing_keys_name_the_template_and_key(template, completion, source, key):
    with pytest.raises(TemplateError) as info:
        Template(template, where="grader 'g' input").render(Sample(completion, item=ITEM))
    err = info.value
    assert (err.source, err.key, err.template) == (source, key, template)
    assert "grader 'g' input" in str(err) and template in str(err)


def test_template_lists_the_columns_it_reads():
    assert Template("{{item.a}} {{item.b.c}} {{sample.output_text}} {{item.a}}").columns == ("a", "b")


# -- multi ------------------------------------------------------------------------------

MULTI = {
    "type": "multi",
    "name": "quality",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "operation": "eq",
        },
        "close": {
            "type": "text_similarity",
            "name": "close",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * close",
}


def multi(formula: str, **graders) -> dict:
    return {**MULTI, "graders": {**MULTI["graders"], **graders}, "calculate_output": formula}


@pytest.mark.parametrize(
    "formula, output, expected",
    [
        ("0.5 * exact + 0.5 * close", "Paris", 1.0),
        ("0.5 * exact + 0.5 * close", "Pariss", 0.5 * 0 + 0.5 * (10 / 11)),  # fuzzy: 1 insertion of 11 chars
        ("exact ^ 2 + close ^ 2", "Paris", 2.0),  # ^ is a power, as in OpenAI's formulas
        ("0.5 * exact + close ^ 2", "Pariss", (10 / 11) ** 2),  # ... binding tighter than +
        ("max(exact, close)", "Pariss", 10 / 11),
        ("min(exact, close)", "Pariss", 0.0),
        ("clip(exact + close, 0, 1)", "Paris", 1.0),
        ("1 if exact == 1 else close / 2", "Pariss", 5 / 11),
    ],
)
def test_multi_formula(formula, output, expected):
    entry, out = grade_one(multi(formula), output, answer="Paris")
    assert entry.id == "quality"
    assert out.score == pytest.approx(expected)
    assert out.metrics["exact"] == float(output == "Paris")


@pytest.mark.parametrize(
    "formula, message",
    [
        ("exact + missing", "names available: exact, close"),
        ("__import__('os').system('true')", "calculate_output"),  # no builtins, no eval
        ("exact.__class__", "calculate_output"),
        ("'text'", "not a number"),
    ],
)
def test_multi_rejects_bad_or_unsafe_formulas_at_load(formula, message):
    with pytest.raises(ConfigError, match=message):
        grader_set_from_config(multi(formula))


def test_multi_sub_grader_error_is_an_error_naming_it():
    _, out = grade_one(MULTI, "Paris", question="no answer column")
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "sub-grader 'exact' failed" in out.error


def test_multi_sub_grader_on_error_policy_supplies_its_score():
    # `exact` reads a column the row lacks, so it errors; its on_error gives 0.25 instead
    spec = multi(
        "exact + close", exact={**MULTI["graders"]["exact"], "reference": "{{item.missing}}", "on_error": 0.25}
    )
    _, out = grade_one(spec, "Paris", answer="Paris")
    assert (out.kind, out.score) == (OutcomeKind.SCORE, 1.25)  # 0.25 + fuzzy 1.0


def test_multi_with_a_registered_grader_and_a_nested_multi():
    spec = multi(
        "inner + fmt",
        inner={"type": "multi", "graders": {"m": {"name": "math"}}, "calculate_output": "m"},
        fmt={"name": "think_format"},
    )
    del spec["graders"]["exact"], spec["graders"]["close"]
    entry, out = grade_one(spec, "<think>2+2</think><answer>4</answer>", answer="4")
    assert out.score == 2.0
    assert entry.grader.required_columns() == ["answer"]  # the nested math grader's column


NOT_APPLICABLE_PLUGIN = """
import rft

@rft.grader
def only_long(completion: str):
    return 1.0 if len(completion) > 10 else None

@rft.grader(batched=True)
def batch_size(completion: list[str]) -> list[float]:
    return [float(len(completion))] * len(completion)

@rft.hookimpl
def rft_register_graders(register):
    register(only_long)
    register(batch_size)
"""


def test_multi_sub_grader_from_a_plugin_that_does_not_apply(tmp_path):
    plugin = tmp_path / "only_long.py"
    plugin.write_text(NOT_APPLICABLE_PLUGIN)
    spec = {**multi("exact + long", long={"name": "only_long"}), "plugins": [str(plugin)]}
    g = grader_set_from_config(spec, plugins=[str(plugin)]).entries[0].grader
    short, long = g.grade(
        [Sample("Paris", item={"answer": "Paris"}), Sample("Paris, France", item={"answer": "Paris"})]
    )
    assert short.kind is OutcomeKind.NOT_APPLICABLE and "'long' does not apply" in short.reason
    assert (long.kind, long.score) == (OutcomeKind.SCORE, 1.0)  # exact 0 + long 1
    copy = pickle.loads(pickle.dumps(g))  # the copy loads the plugin again from `plugins`
    assert copy.grade([Sample("Paris, France", item={"answer": "Paris"})])[0].score == 1.0


def test_multi_gives_each_sub_grader_the_whole_batch_once(tmp_path):
    plugin = tmp_path / "only_long.py"
    plugin.write_text(NOT_APPLICABLE_PLUGIN)
    spec = {
        "type": "multi",
        "graders": {"n": {"name": "batch_size"}},
        "calculate_output": "n",
        "plugins": [str(plugin)],
    }
    g = grader_set_from_config(spec).entries[0].grader
    assert [o.score for o in g.grade([Sample("a"), Sample("b"), Sample("c")])] == [3.0, 3.0, 3.0]


def test_multi_pickles_and_rebuilds_the_same():
    gs = grader_set_from_config(MULTI)
    g = gs.entries[0].grader
    copy = pickle.loads(pickle.dumps(g))
    samples = [Sample("Pariss", item={"answer": "Paris"}), Sample("Paris", item={"answer": "Paris"})]
    assert [o.score for o in copy.grade(samples)] == [o.score for o in g.grade(samples)]
    assert copy.identity == g.identity


# -- the shipped OpenAI-form grader set scores the shipped example ---------------------


def _example_samples() -> list[Sample]:
    rows = [json.loads(line) for line in (ROOT / "examples/grade/rows.jsonl").read_text().splitlines() if line.strip()]
    comps = [
        json.loads(line)["completion"]
        for line in (ROOT / "examples/grade/completions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert len(rows) == len(comps) == 12
    return [Sample(c, item=r, prompt=r["prompt"]) for r, c in zip(rows, comps)]


def test_configs_graders_openai_json_scores_the_example():
    samples = _example_samples()
    gs = grader_set_from_file(ROOT / "configs/graders.openai.json")
    gs.check_inputs(samples[0].item.keys())
    assert gs.ids == ["answer_quality", "json_answer", "fuzzy_solution"]
    results = {e.id: e.grader.grade(samples) for e in gs}
    assert all(o.kind is OutcomeKind.SCORE for outs in results.values() for o in outs)
    # row 1 answers in JSON with the right value; row 5 in JSON with a wrong one; row 8's
    # JSON is inside a code fence, which is not output_json (OpenAI: the whole output only)
    assert [o.score for o in results["json_answer"]] == [float(i == 1) for i in range(12)]
    # answer_quality = 0.8 * (answer appears) + 0.2 * rouge_l: the wrong answers (rows 5, 6, 9) score < 0.2
    low = [i for i, o in enumerate(results["answer_quality"]) if o.score < 0.2]
    assert low == [5, 6, 9]


def test_configs_graders_yaml_scores_the_example():
    samples = _example_samples()
    gs = grader_set_from_file(ROOT / "configs/graders.yaml")
    gs.check_inputs(samples[0].item.keys())
    assert dict(zip(gs.ids, gs.weights)) == {
        "math": 1.0,
        "numeric": 0.0,
        "think_format": 0.2,
        "length_penalty": 0.1,
        "json_answer": 0.0,
    }
    math = [o.score for o in gs["math"].grader.grade(samples)]
    # rows 5 (60 ≠ 90), 6 (14 ≠ 12) and 9 (10 ≠ 21) are the wrong answers
    assert math == [float(i not in (5, 6, 9)) for i in range(12)]
    assert [o.score for o in gs["numeric"].grader.grade(samples)] == math  # the cross-check agrees
