"""OpenAI grader JSON exactly as OpenAI documents it, with OpenAI's own example objects.

The grader objects below are copied from OpenAI's graders guide
(https://developers.openai.com/api/docs/guides/graders) and API reference
(``POST /fine_tuning/alpha/graders/run``), with the item and model sample of the
documented run where there is one. One test (or table) per documented point:

- ``pass_threshold`` is accepted on every grader type and means "a sample passes when
  its score is at least this" (a ``passed`` metric; the score is unchanged);
- templates index lists: ``{{sample.output_tools[0].function.name}}``;
- ``output_tools[*].function.arguments`` is the JSON string of Chat Completions;
- ``output_json`` holds a value only when the whole output is JSON (``json_schema``
  keeps lenient extraction as ``extract: lenient``);
- a ``score_model`` reply outside ``range`` is clipped to it;
- the ``python`` grader offers the documented libraries that are installed, read-only,
  with no network.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys

import pytest
from fake_openai import FakeOpenAI

from graders.python_grader import OPENAI_LIBRARIES, offered_libraries
from rft.core import OutcomeKind, Sample
from rft.core.errors import ConfigError
from rft.plugins import grader_set_from_config

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

# -- OpenAI's documented examples, verbatim ----------------------------------------------

#: The API reference's example item and model sample (``/fine_tuning/alpha/graders/run``).
ITEM = {"reference_answer": "fuzzy wuzzy was a bear"}
MODEL_SAMPLE = "fuzzy wuzzy was a bear"

STRING_CHECK = {
    "type": "string_check",
    "name": "Example string check grader",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference_answer}}",
    "operation": "eq",
}

TEXT_SIMILARITY = {
    "type": "text_similarity",
    "name": "Example text similarity grader",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference_answer}}",
    "evaluation_metric": "fuzzy_match",
}

#: The graders guide's python grader (rapidfuzz, one of the runtime's documented libraries).
PYTHON_SOURCE = """
from rapidfuzz import fuzz, utils

def grade(sample, item) -> float:
    output_text = sample["output_text"]
    reference_answer = item["reference_answer"]
    return fuzz.WRatio(output_text, reference_answer, processor=utils.default_process) / 100.0
"""
PYTHON = {"type": "python", "source": PYTHON_SOURCE}
#: The guide's minimal python grader object, with its image tag.
PYTHON_MINIMAL = {"type": "python", "source": "def grade(sample, item):\n    return 1.0", "image_tag": "2025-05-08"}

#: The graders guide's score model grader, with its pass_threshold, and its run's item and sample.
SCORE_MODEL_GUIDE = {
    "type": "score_model",
    "name": "my_score_model",
    "input": [
        {
            "role": "system",
            "content": "You are an expert grader. If the reference and model answer are exact matches, output a score "
            "of 1. If they are somewhat similar in meaning, output a score in 0.5. Otherwise, give a score of 0.",
        },
        {
            "role": "user",
            "content": "Reference: {{ item.reference_answer }}. Model answer: {{ sample.output_text }}",
        },
    ],
    "pass_threshold": 0.5,
    "model": "o4-mini-2025-04-16",
    "range": [0, 1],
    "sampling_params": {
        "max_completions_tokens": 32768,
        "top_p": 1,
        "reasoning_effort": "medium",
    },
}

#: The graders guide's multigrader over JSON output (a text_similarity with pass_threshold).
JSON_MULTI = {
    "type": "multi",
    "graders": {
        "name": {
            "name": "name_grader",
            "type": "text_similarity",
            "input": "{{sample.output_json.name}}",
            "reference": "{{item.name}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.9,
        },
        "email": {
            "name": "email_grader",
            "type": "string_check",
            "input": "{{sample.output_json.email}}",
            "reference": "{{item.email}}",
            "operation": "eq",
        },
    },
    "calculate_output": "(name + email) / 2",
}

#: The API reference's score model grader (its judge answers just the score).
SCORE_MODEL = {
    "type": "score_model",
    "name": "Example score model grader",
    "input": [
        {
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "Score how close the reference answer is to the model answer on a 0-1 scale. Return only "
                    "the score.\n\nReference answer: {{item.reference_answer}}\n\nModel answer: {{sample.output_text}}",
                }
            ],
        }
    ],
    "model": "gpt-5-mini",
    "sampling_params": {"temperature": 1, "top_p": 1, "seed": 42},
}

#: The graders guide's label model grader.
LABEL_MODEL = {
    "name": "First label grader",
    "type": "label_model",
    "model": "gpt-4o-2024-08-06",
    "input": [
        {
            "type": "message",
            "role": "system",
            "content": {
                "type": "input_text",
                "text": "Classify the sentiment of the following statement as one of positive, neutral, or negative",
            },
        },
        {"type": "message", "role": "user", "content": {"type": "input_text", "text": "Statement: {{item.response}}"}},
    ],
    "passing_labels": ["positive"],
    "labels": ["positive", "neutral", "negative"],
}

#: The graders guide's multigrader over a tool call: the function's name, and its
#: arguments compared as the JSON *string* the model produced.
TOOL_MULTI = {
    "type": "multi",
    "graders": {
        "function_name": {
            "name": "function_name",
            "type": "string_check",
            "input": "get_acceptors",
            "reference": "{{sample.output_tools[0].function.name}}",
            "operation": "eq",
        },
        "arguments": {
            "name": "arguments",
            "type": "string_check",
            "input": '{"smiles": "{{item.smiles}}"}',
            "reference": "{{sample.output_tools[0].function.arguments}}",
            "operation": "eq",
        },
    },
    "calculate_output": "0.5 * function_name + 0.5 * arguments",
}


@pytest.fixture(scope="module")
def judge():
    """A fake OpenAI-compatible judge: the last ``[[…]]`` in the request is its reply, else ``Score: 1``."""
    with FakeOpenAI() as server:
        yield server
    from rft.judges.client import close_all

    close_all()


def load(obj: dict, judge_url: str | None = None):
    """Load one OpenAI grader object as a grader-set file would (a judge gets the fake endpoint)."""
    obj = copy.deepcopy(obj)
    if obj["type"] in ("score_model", "label_model"):
        obj["base_url"] = judge_url
    return grader_set_from_config(obj).entries[0].grader


def grade(obj: dict, completion: str | Sample, judge_url: str | None = None, **item):
    sample = completion if isinstance(completion, Sample) else Sample(completion, item=item or dict(ITEM))
    return load(obj, judge_url).grade([sample])[0]


# -- pass_threshold, on every grader type -------------------------------------------------

DOCUMENTED = {
    "string_check": (STRING_CHECK, MODEL_SAMPLE, ITEM, 1.0),
    "text_similarity": (TEXT_SIMILARITY, MODEL_SAMPLE, ITEM, 1.0),
    "python": (PYTHON, MODEL_SAMPLE, ITEM, 1.0),  # fuzz.WRatio of equal texts
    "python_minimal": (PYTHON_MINIMAL, MODEL_SAMPLE, ITEM, 1.0),
    "score_model": (SCORE_MODEL, MODEL_SAMPLE, ITEM, 1.0),
    "label_model": (LABEL_MODEL, "I love it", {"response": "[[positive]]"}, 1.0),
    "multi": (
        {**TOOL_MULTI, "name": "tool"},
        '<tool_call>{"name": "get_acceptors", "arguments": {"smiles": "CCO"}}</tool_call>',
        {"smiles": "CCO"},
        1.0,
    ),
}


@pytest.mark.parametrize("kind", list(DOCUMENTED))
def test_documented_examples_score_as_documented(kind, judge):
    if kind == "python":
        pytest.importorskip("rapidfuzz")
    obj, completion, item, expected = DOCUMENTED[kind]
    out = grade(obj, completion, judge.base_url, **item)
    assert (out.kind, out.score) == (OutcomeKind.SCORE, pytest.approx(expected))
    assert "passed" not in out.metrics  # no pass mark asked for


@pytest.mark.parametrize("kind", list(DOCUMENTED))
@pytest.mark.parametrize("threshold, passed", [(0.5, 1.0), (1.0, 1.0), (1.5, 0.0)])
def test_pass_threshold_is_accepted_on_every_grader_type(kind, threshold, passed, judge):
    if kind == "python":
        pytest.importorskip("rapidfuzz")
    obj, completion, item, expected = DOCUMENTED[kind]
    out = grade({**obj, "pass_threshold": threshold}, completion, judge.base_url, **item)
    # the threshold decides `passed` (score >= threshold); the reward stays the score
    assert (out.kind, out.score) == (OutcomeKind.SCORE, pytest.approx(expected))
    assert out.metrics["passed"] == passed


def test_score_model_from_the_guide_with_its_pass_threshold():
    # the judge answers in the response format the guide describes: {"result": float, "steps": [...]}
    def reply(messages):
        return json.dumps({"result": 0.5, "steps": [{"description": "compare", "conclusion": "similar"}]})

    with FakeOpenAI(responder=reply) as server:
        out = grade(SCORE_MODEL_GUIDE, "0.9", server.base_url, reference_answer=1.0)
        sent = server.payloads[-1]["messages"]
    assert (out.kind, out.score, out.metrics["passed"]) == (OutcomeKind.SCORE, 0.5, 1.0)
    assert "similar" in out.reason  # the steps' conclusions explain the score
    assert sent[1]["content"].startswith("Reference: 1.0. Model answer: 0.9")  # `{{ item.x }}` with spaces


def test_json_multigrader_from_the_guide():
    item = {"name": "John Doe", "email": "john.doe@gmail.com"}
    g = load(JSON_MULTI)
    right, typo, wrong_email, prose = g.grade(
        [
            Sample('{"name": "John Doe", "email": "john.doe@gmail.com"}', item=item),
            Sample('{"name": "Jon Doe", "email": "john.doe@gmail.com"}', item=item),
            Sample('{"name": "John Doe", "email": "jd@gmail.com"}', item=item),
            Sample('Here you go: {"name": "John Doe", "email": "john.doe@gmail.com"}', item=item),
        ]
    )
    assert (right.score, right.metrics["name/passed"]) == (1.0, 1.0)
    # "samples that get the email right will score between 0.5-1.0"; the name's pass mark is 0.9
    assert 0.5 < typo.score < 1.0 and typo.metrics["name/passed"] == 1.0
    assert wrong_email.score == 0.5
    assert prose.score == 0.0  # not JSON as a whole: output_json is not set


def test_string_check_neq_as_the_guide_spells_it():
    obj = {**STRING_CHECK, "operation": "neq"}
    assert [grade(obj, text).score for text in (MODEL_SAMPLE, "a bear")] == [0.0, 1.0]


@pytest.mark.parametrize("kind", list(DOCUMENTED))
def test_pass_threshold_must_be_a_number(kind):
    obj = DOCUMENTED[kind][0]
    with pytest.raises(ConfigError, match="pass_threshold must be a number"):
        load({**obj, "pass_threshold": "high"}, "http://127.0.0.1:9/v1")


def test_score_model_pass_threshold_on_its_own_range(judge):
    # the documented meaning: a sample passes when its score reaches the threshold, on the grader's range
    obj = {**SCORE_MODEL, "range": [0, 10], "pass_threshold": 7}
    low, high = load(obj, judge.base_url).grade([Sample("[[6]]", item=ITEM), Sample("[[7]]", item=ITEM)])
    assert (low.score, low.metrics["passed"], high.score, high.metrics["passed"]) == (6.0, 0.0, 7.0, 1.0)


# -- templates index lists; output_tools arguments are JSON strings ------------------------


def test_tool_call_multigrader_from_the_guide(judge):
    item = {"smiles": "CCO"}
    # a call parsed from the completion: its arguments written as Chat Completions does
    tagged = '<tool_call>{"name": "get_acceptors", "arguments": {"smiles": "CCO"}}</tool_call>'
    # the call as Chat Completions returns it: `arguments` is a string, kept byte for byte
    chat = Sample(
        "",
        item=item,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_acceptors", "arguments": '{"smiles": "CCO"}'},
            }
        ],
    )
    compact = Sample(
        "",
        item=item,
        tool_calls=[{"type": "function", "function": {"name": "get_acceptors", "arguments": '{"smiles":"CCO"}'}}],
    )
    wrong_name = '<tool_call>{"name": "get_donors", "arguments": {"smiles": "CCO"}}</tool_call>'
    g = load(TOOL_MULTI)
    outs = g.grade([Sample(tagged, item=item), chat, compact, Sample(wrong_name, item=item)])
    assert [o.score for o in outs] == [1.0, 1.0, 0.5, 0.5]
    assert (outs[2].metrics["function_name"], outs[2].metrics["arguments"]) == (1.0, 0.0)  # compared as strings


def test_output_tools_arguments_are_always_the_json_string():
    from rft.core.templates import Template

    template = Template("{{sample.output_tools}}")
    as_dict = Sample('<tool_call>{"name": "f", "arguments": {"city": "Zürich", "n": 2}}</tool_call>')
    as_text = Sample('<tool_call>{"name": "f", "arguments": "{\\"city\\": \\"Zürich\\"}"}</tool_call>')
    given = Sample("", tool_calls=[{"name": "f", "arguments": {"city": "Zürich"}}])
    for sample in (as_dict, as_text, given):
        (call,) = template.value(sample)
        assert isinstance(call["function"]["arguments"], str)
        assert json.loads(call["function"]["arguments"])["city"] == "Zürich"
    assert template.value(as_dict)[0]["function"]["arguments"] == '{"city": "Zürich", "n": 2}'
    # rendered inside text, the string is inserted as is (not JSON-quoted again)
    assert Template("args={{sample.output_tools[0].function.arguments}}").render(given) == 'args={"city": "Zürich"}'


def test_a_list_index_past_the_end_is_the_models_miss_not_an_error():
    obj = {**TOOL_MULTI["graders"]["function_name"], "name": "fn"}
    out = grade(obj, "I will not call a tool.")
    assert (out.kind, out.score) == (OutcomeKind.SCORE, 0.0)
    assert "sample.output_tools[0]" in out.reason


@pytest.mark.parametrize("template", ["{{item.a[}}", "{{item.a[x]}}", "{{sample.output_text.x}}", "{{item[0]}}"])
def test_bad_paths_fail_at_load(template):
    with pytest.raises(ConfigError):
        load({**STRING_CHECK, "input": template})


# -- output_json only for a whole-JSON output; json_schema's explicit lenient option ---------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ('{"answer": "Paris"}', 1.0),
        ('  {"answer": "Paris"}\n', 1.0),
        ('Sure! {"answer": "Paris"}', 0.0),  # JSON inside prose: not output_json
        ('```json\n{"answer": "Paris"}\n```', 0.0),  # nor inside a code fence
    ],
)
def test_output_json_holds_a_value_only_when_the_whole_output_is_json(completion, expected):
    obj = {**STRING_CHECK, "input": "{{sample.output_json.answer}}", "reference": "Paris"}
    assert grade(obj, completion).score == expected


@linux_only
@pytest.mark.parametrize(
    "completion, expected", [('{"n": 7}', {"n": 7}), ('Sure: {"n": 7}', None), ('```json\n{"n": 7}\n```', None)]
)
def test_python_grader_output_json_is_the_whole_output_or_none(completion, expected):
    source = "import json\ndef grade(sample, item):\n    return json.dumps(sample['output_json'])\n"
    out = load({"type": "python", "name": "p", "source": source, "libraries": []}).grade([Sample(completion)])[0]
    # a string is not a score: the value comes back as invalid output, which shows it
    assert json.dumps(expected) in str(out.error)


def test_json_schema_reads_the_whole_output_unless_told_to_be_lenient():
    from rft.plugins import get_plugin_manager, get_registry

    registry = get_registry(get_plugin_manager())
    schema = {"type": "object", "required": ["answer"]}
    strict = registry.get("json_schema").make({"schema": schema})
    lenient = registry.get("json_schema").make({"schema": schema, "extract": "lenient"})
    samples = [Sample('{"answer": 1}'), Sample('Here: ```json\n{"answer": 1}\n```'), Sample('I think {"answer": 1}')]
    assert [o.score for o in strict.grade(samples)] == [1.0, 0.0, 0.0]
    assert "not JSON as a whole" in str(strict.grade(samples[1:2])[0].reason)
    assert [o.score for o in lenient.grade(samples)] == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="did you mean 'lenient'"):
        registry.get("json_schema").make({"schema": schema, "extract": "lenien"})


# -- score_model: a reply outside range is clipped, as documented ---------------------------


@pytest.mark.parametrize(
    "reply, range_, score, clipped",
    [
        ("1.7", None, 1.0, True),  # default range [0, 1]
        ("-0.5", None, 0.0, True),
        ("Score: 11", [0, 10], 10.0, True),
        ('{"score": 12, "reason": "great"}', [0, 10], 10.0, True),
        ("Score: 7", [0, 10], 7.0, False),
    ],
)
def test_score_model_reply_outside_range_is_clipped(judge, reply, range_, score, clipped):
    obj = {**SCORE_MODEL, **({"range": range_} if range_ else {})}
    out = grade(obj, f"[[{reply}]]", judge.base_url)
    assert (out.kind, out.score) == (OutcomeKind.SCORE, score)
    assert out.metrics.get("judge_clipped", 0.0) == float(clipped)
    if clipped:
        assert "clipped" in out.reason


def test_score_model_reply_without_a_number_is_still_unparseable_not_zero(judge):
    out = grade(SCORE_MODEL, "[[I cannot tell.]]", judge.base_url)
    assert (out.kind, out.score) == (OutcomeKind.JUDGE_UNPARSEABLE, None)


# -- python grader: the runtime's documented libraries, read-only, no network ----------------


@linux_only
def test_python_grader_run_from_the_guide():
    fuzz = pytest.importorskip("rapidfuzz.fuzz")
    from rapidfuzz import utils

    item = {"reference_answer": "fuzzy wuzzy had no hair"}
    out = grade(PYTHON, "fuzzy wuzzy was a bear", **item)
    expected = fuzz.WRatio("fuzzy wuzzy was a bear", item["reference_answer"], processor=utils.default_process) / 100
    assert (out.kind, out.score) == (OutcomeKind.SCORE, pytest.approx(expected))
    assert 0 < out.score < 1


def test_offered_libraries_are_the_documented_ones_that_are_installed():
    libs = offered_libraries()
    installed = [n for n in OPENAI_LIBRARIES if importlib.util.find_spec(_module(n)) is not None]
    assert list(libs.offered) == installed
    assert set(libs.missing) == set(OPENAI_LIBRARIES) - set(installed)
    if "pandas" in libs.offered:
        assert "dateutil" in libs.names  # pandas needs it, so it comes along
    assert "torch" not in libs.names and "rft" not in libs.names


def _module(dist: str) -> str:
    return {"scikit-learn": "sklearn", "rouge-score": "rouge_score", "pyyaml": "yaml", "scikit-bio": "skbio"}.get(
        dist, dist.replace("-", "_")
    )


LIBRARY_USE = {
    "numpy": "import numpy as np\nvalue = float(np.mean([0.0, 1.0]))",
    "sympy": "import sympy\nvalue = float(sympy.nsimplify('1/2'))",
    "pandas": "import pandas as pd\nvalue = float(pd.Series([0.25, 0.25]).sum())",
    "scipy": "from scipy import stats\nvalue = float(stats.norm.cdf(0))",
    "scikit-learn": "from sklearn.metrics import accuracy_score\nvalue = accuracy_score([1, 0], [1, 1])",
    "jsonschema": "import jsonschema\njsonschema.validate({}, {'type': 'object'})\nvalue = 0.5",
    "pyyaml": "import yaml\nvalue = yaml.safe_load('v: 0.5')['v']",
}


@linux_only
@pytest.mark.parametrize("library", list(LIBRARY_USE))
def test_python_grader_imports_a_documented_library(library):
    if library not in offered_libraries().offered:
        pytest.skip(f"{library} is not installed here")
    body = "\n    ".join(LIBRARY_USE[library].splitlines())
    source = f"def grade(sample, item):\n    {body}\n    return value\n"
    out = grade({"type": "python", "name": "lib", "source": source}, "x")
    assert (out.kind, out.score) == (OutcomeKind.SCORE, 0.5)


@linux_only
@pytest.mark.parametrize(
    "body, message",
    [
        ("import torch", "No module named 'torch'"),  # installed here, but not offered
        ("import rft", "No module named 'rft'"),
        # the library directory is read-only
        (
            "import os, numpy\n    open(os.path.join(os.path.dirname(numpy.__file__), 'x.py'), 'w')",
            "Read-only file system",
        ),
        # and there is still no network
        (
            "import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)",
            "OSError",
        ),
    ],
)
def test_python_grader_libraries_stop_at_the_documented_ones(body, message):
    if "numpy" not in offered_libraries().offered:
        pytest.skip("numpy is not installed here")
    source = f"def grade(sample, item):\n    {body}\n    return 1.0\n"
    out = grade({"type": "python", "name": "lib", "source": source, "persistent": False}, "x")
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert message in str(out.error)


def test_python_grader_libraries_option():
    with pytest.raises(ConfigError, match="no-such-package-here, not installed"):
        load({**PYTHON, "libraries": ["numpy", "no-such-package-here"]})
    with pytest.raises(ConfigError, match="must be a list of package names"):
        load({**PYTHON, "libraries": "numpy"})


@linux_only
def test_python_grader_with_no_libraries_has_the_standard_library_only():
    if "numpy" not in offered_libraries().offered:
        pytest.skip("numpy is not installed here")
    source = "def grade(sample, item):\n    import numpy\n    return 1.0\n"
    out = grade({"type": "python", "name": "lib", "source": source, "libraries": []}, "x")
    assert out.kind is OutcomeKind.GRADER_ERROR and "No module named 'numpy'" in str(out.error)


@linux_only
def test_an_import_error_says_what_is_offered_and_how_to_get_more():
    missing = offered_libraries().missing
    if missing:  # a documented library not installed here: the error says to install it
        dist = missing[0]
        source = f"def grade(sample, item):\n    import {_module(dist)}\n    return 1.0\n"
        out = grade({"type": "python", "name": "lib", "source": source}, "x")
        assert out.kind is OutcomeKind.GRADER_ERROR and f"pip install {dist}" in str(out.error)
    source = "def grade(sample, item):\n    import torch\n    return 1.0\n"
    out = grade({"type": "python", "name": "lib", "source": source}, "x")
    assert "other packages are not importable" in str(out.error) or "standard library only" in str(out.error)
