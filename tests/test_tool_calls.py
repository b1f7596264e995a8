"""The ``tool_call`` grader: OpenAI-shaped references, and BFCL's possible answers as they are."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from helpers import REF_CALL, TOOLS

from rft.core import Grader, OutcomeKind, Sample
from rft.core.errors import ConfigError
from rft.core.parsing import bfcl_call, reference_tool_calls
from rft.plugins import get_plugin_manager, get_registry

# BFCL-shaped: function descriptions with BFCL's types, and a possible-answer entry as shipped
FUNCTIONS = [
    {
        "name": "calculate_triangle_area",
        "parameters": {
            "type": "dict",
            "properties": {
                "base": {"type": "integer"},
                "height": {"type": "integer"},
                "unit": {"type": "string"},
            },
            "required": ["base", "height"],
        },
    },
    {
        "name": "book_hotel",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "nights": {"type": "integer"},
                "budget": {"type": "float"},
                "date": {"type": "string"},
                "filters": {"type": "dict", "properties": {"stars": {"type": "integer"}, "pool": {"type": "boolean"}}},
            },
            "required": ["city", "nights"],
        },
    },
]
TRIANGLE = {
    "id": "simple_0",
    "ground_truth": [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}],
}


@pytest.fixture(scope="module")
def registry():
    return get_registry(get_plugin_manager(entry_points=False))


def make(registry, **params) -> Grader:
    """The grader as a grader-set entry ``{name: tool_call, **params}`` makes it."""
    return registry.get("tool_call").make(params)


def call(name: str, **arguments) -> dict:
    """A Chat Completions tool call (arguments as JSON text)."""
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def grade(g: Grader, calls: list[dict], **item):
    return g.grade([Sample("", item=item, tool_calls=calls)])[0]


def bfcl(g: Grader, calls: list[dict], answer: dict | list, functions: list[dict] = FUNCTIONS):
    return grade(g, calls, ground_truth=answer, function=functions)


@pytest.fixture
def bfcl_grader(registry):
    return make(registry, reference_column="ground_truth", tools_column="function", partial=False)


# -- OpenAI-shaped references (behaviour kept from before BFCL) ------------------------


@pytest.mark.parametrize(
    "calls, partial, expected",
    [
        ([call("get_weather", city="Paris", unit="c")], True, 1.0),
        ([call("get_weather", city=" Paris", unit="c")], True, 1.0),  # surrounding whitespace ignored
        # right tool and valid arguments, one of two reference values wrong: (1 + 1 + 1/2) / 3
        ([call("get_weather", city="Lyon", unit="c")], True, 2.5 / 3),
        # `unit: k` breaks the tool's enum: (name 1 + schema 0 + city 1/2) / 3
        ([call("get_weather", city="Paris", unit="k")], True, 1.5 / 3),
        ([call("get_time", city="Paris")], True, 0.0),  # wrong tool: nothing else can be right
        ([call("get_weather", city="Lyon", unit="c")], False, 0.0),  # all or nothing
        ([], True, 0.0),  # no call made
        # the right call plus an extra one: 1 correct of 2 calls
        ([call("get_weather", city="Paris", unit="c"), call("get_weather", city="Rome")], True, 0.5),
    ],
)
def test_tool_call(registry, calls, partial, expected):
    g = make(registry, partial=partial)
    assert grade(g, calls, expected_tool_calls=[REF_CALL], tools=TOOLS).score == pytest.approx(expected)


def test_tool_call_reports_components_and_the_first_problem(registry):
    out = grade(
        make(registry), [call("get_weather", city="Paris", unit="k")], expected_tool_calls=[REF_CALL], tools=TOOLS
    )
    assert out.metrics == {"name": 1.0, "schema": 0.0, "arguments": 0.5, "calls_matched": 1.0}
    assert "$.unit" in out.reason and "'k' is not one of" in out.reason


def test_tool_call_parses_calls_from_the_completion_text(registry):
    text = 'Let me check.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}</tool_call>'
    # the reference may be OpenAI's shape with JSON-text arguments, as in fine-tuning data
    ref = {
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}
        ]
    }
    out = make(registry).grade([Sample(text, item={"expected_tool_calls": ref, "tools": TOOLS})])[0]
    assert out.score == 1.0


def test_tool_call_when_no_call_is_expected(registry):
    g = make(registry)
    none, some = g.grade(
        [
            Sample("It is sunny.", item={"expected_tool_calls": []}),
            Sample("", item={"expected_tool_calls": []}, tool_calls=[call("get_weather", city="x")]),
        ]
    )
    assert (none.score, some.score) == (1.0, 0.0)


# -- BFCL's possible answers, taken as they are ------------------------------------------


def test_a_bfcl_possible_answer_entry_is_a_reference_as_is(bfcl_grader):
    out = bfcl(bfcl_grader, [call("calculate_triangle_area", base=10, height=5)], TRIANGLE)
    assert (out.score, out.reason) == (1.0, "1 call(s) correct")
    # JSON text of the entry, as read from BFCL's .json files, works the same
    assert bfcl(bfcl_grader, [call("calculate_triangle_area", base=10, height=5)], json.dumps(TRIANGLE)).score == 1.0


@pytest.mark.parametrize(
    "arguments, ok",
    [
        ({"city": "Paris", "nights": 2}, True),
        ({"city": "Paris, France", "nights": 2}, True),  # several allowed values
        ({"city": "Lyon", "nights": 2}, False),  # none of them
        ({"city": "Paris", "nights": 2, "budget": 150.0}, True),  # an optional argument given ...
        ({"city": "Paris", "nights": 2, "budget": 150}, True),  # ... an int where BFCL's `float` is declared
        ({"city": "Paris", "nights": 2, "budget": 99.0}, False),  # ... with a value not allowed
        ({"city": "Paris"}, False),  # a required argument missing
        ({"city": "Paris", "nights": 2.0}, False),  # `integer` means an int: 2.0 is not one
        ({"city": "Paris", "nights": "2"}, False),
        ({"city": "Paris", "nights": True}, False),  # a bool is no integer
        ({"city": "Paris", "nights": 2, "pets": True}, False),  # declared by neither reference nor tool
        ({"city": "Paris", "nights": 2, "date": "2024-05-01"}, False),  # declared by the tool, not the reference
    ],
)
def test_allowed_values_optional_arguments_and_types(bfcl_grader, arguments, ok):
    answer = [{"book_hotel": {"city": ["Paris", "Paris, France"], "nights": [2], "budget": ["", 150.0]}}]
    out = bfcl(bfcl_grader, [call("book_hotel", **arguments)], answer)
    assert (out.score == 1.0) is ok, out.reason


def test_problems_name_the_argument_and_the_allowed_values(registry):
    g = make(registry, reference_column="ground_truth", tools_column="function")
    answer = [{"book_hotel": {"city": ["Paris", "Paris, France"], "nights": [2], "budget": ["", 150.0]}}]
    out = bfcl(g, [call("book_hotel", city="Lyon", nights=2)], answer)
    assert out.reason == "call 0: argument 'city' is 'Lyon', expected one of 'Paris', 'Paris, France'"
    # partial credit: name 1, schema 1, arguments 2 of 3 (the omitted budget is allowed)
    assert out.score == pytest.approx((1 + 1 + 2 / 3) / 3)
    out = bfcl(g, [call("book_hotel", city="Paris", nights=2, pets=True)], answer)
    assert "argument 'pets' is not declared by tool 'book_hotel'" in out.reason


@pytest.mark.parametrize(
    "strings, value, ok",
    [
        ("strip", "  April 1, 2024 ", True),
        ("strip", "april 1 2024", False),
        ("bfcl", "april 1 2024", True),  # BFCL: spaces and ,./-_*^ dropped, case ignored
        ("bfcl", "APRIL_1_2024", True),
        ("bfcl", "April 2, 2024", False),
        ("exact", " April 1, 2024", False),
    ],
)
def test_string_comparison(registry, strings, value, ok):
    g = make(registry, reference_column="ground_truth", tools_column="function", strings=strings, partial=False)
    answer = [{"book_hotel": {"city": ["Paris"], "nights": [1], "date": ["April 1, 2024"]}}]
    assert (bfcl(g, [call("book_hotel", city="Paris", nights=1, date=value)], answer).score == 1.0) is ok


def test_bfcl_strings_also_match_the_tools_enum(registry):
    enum = {"type": "string", "enum": ["fastest", "scenic"]}
    functions = [{"name": "f", "parameters": {"type": "dict", "properties": {"mode": enum}}}]
    for strings, ok in (("bfcl", True), ("strip", False)):
        g = make(registry, reference_column="ground_truth", tools_column="function", strings=strings, partial=False)
        assert (bfcl(g, [call("f", mode="FASTEST")], [{"f": {"mode": ["fastest"]}}], functions).score == 1.0) is ok
        # a value the reference allows passes although the tool's enum lacks it
        assert bfcl(g, [call("f", mode="dontcare")], [{"f": {"mode": ["dontcare"]}}], functions).score == 1.0


def test_extra_arguments_allow_keeps_the_schema_as_the_judge(registry):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    ref = {"name": "get_weather", "arguments": {"city": "Paris"}}
    made = [call("get_weather", city="Paris", unit="c")]
    reject = grade(make(registry), made, expected_tool_calls=ref, tools=tools)
    assert reject.score < 1 and "argument 'unit' is not in the reference" in reject.reason
    assert grade(make(registry, extra_arguments="allow"), made, expected_tool_calls=ref, tools=tools).score == 1.0


def test_parallel_calls_match_regardless_of_order(registry, bfcl_grader):
    answer = [
        {"calculate_triangle_area": {"base": [10], "height": [5]}},
        {"calculate_triangle_area": {"base": [3], "height": [4]}},
    ]
    a, b = call("calculate_triangle_area", base=10, height=5), call("calculate_triangle_area", base=3, height=4)
    assert bfcl(bfcl_grader, [b, a], answer).score == 1.0
    ordered = make(registry, reference_column="ground_truth", tools_column="function", partial=False, ordered=True)
    assert bfcl(ordered, [b, a], answer).score == 0.0
    assert bfcl(ordered, [a, b], answer).score == 1.0
    # a dropped or a repeated call costs its share: right calls / max(expected, made)
    assert bfcl(bfcl_grader, [a], answer).score == 0.5
    assert bfcl(bfcl_grader, [a, b, b], answer).score == pytest.approx(2 / 3)


def test_the_pairing_finds_a_full_match_where_first_come_first_served_does_not(bfcl_grader):
    # the first expected call allows Microsoft or Apple: taking the first fitting call for it
    # (Apple) leaves nothing for the third; BFCL's own checker fails this correct answer
    answer = [
        {"get_stock_price": {"company": ["Microsoft", "Apple"], "month": [1]}},
        {"get_stock_price": {"company": ["Microsoft"], "month": [2]}},
        {"get_stock_price": {"company": ["Apple"], "month": [1]}},
    ]
    functions = [
        {
            "name": "get_stock_price",
            "parameters": {"type": "dict", "properties": {"company": {"type": "string"}, "month": {"type": "integer"}}},
        }
    ]
    made = [
        call("get_stock_price", company="Apple", month=1),
        call("get_stock_price", company="Microsoft", month=2),
        call("get_stock_price", company="Microsoft", month=1),
    ]
    assert bfcl(bfcl_grader, made, answer, functions).score == 1.0


def test_a_wrong_call_among_parallel_ones_is_named(registry):
    g = make(registry, reference_column="ground_truth", tools_column="function")
    answer = [
        {"calculate_triangle_area": {"base": [10], "height": [5]}},
        {"book_hotel": {"city": ["Paris"], "nights": [2]}},
    ]
    made = [call("book_hotel", city="Rome", nights=2), call("calculate_triangle_area", base=10, height=5)]
    out = bfcl(g, made, answer)
    assert out.reason == "call 1 (made as call 0): argument 'city' is 'Rome', expected 'Paris'"
    assert out.score == pytest.approx((1 + (1 + 1 + 1 / 2) / 3) / 2)


def test_dict_arguments_follow_bfcl_patterns(bfcl_grader):
    # a dict among the allowed values lists each key's allowed values; "" = the key may be left out
    answer = [{"book_hotel": {"city": ["Paris"], "nights": [1], "filters": [{"stars": [4, 5], "pool": [True, ""]}]}}]
    for filters, ok in (
        ({"stars": 5}, True),
        ({"stars": 4, "pool": True}, True),
        ({"stars": 3}, False),
        ({"pool": True}, False),  # stars is not optional
        ({"stars": 4, "spa": True}, False),  # a key the pattern does not list
    ):
        out = bfcl(bfcl_grader, [call("book_hotel", city="Paris", nights=1, filters=filters)], answer)
        assert (out.score == 1.0) is ok, (filters, out.reason)


def test_a_reference_value_of_another_type_than_declared_is_accepted_literally(bfcl_grader):
    # BFCL's references sometimes give a value of another type than the tool declares (None
    # for a float, a variable name for an array): that literal value passes the type check
    functions = [
        {"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "float"}}, "required": ["x"]}}
    ]
    answer = [{"f": {"x": [None, 1.5]}}]
    assert bfcl(bfcl_grader, [call("f", x=None)], answer, functions).score == 1.0
    assert bfcl(bfcl_grader, [call("f", x="None")], answer, functions).score == 0.0


@pytest.mark.parametrize(
    "params, message",
    [
        ({"strings": "fuzzy"}, "`strings: fuzzy` is not one of strip, exact, bfcl"),
        ({"extra_arguments": "maybe"}, "`extra_arguments: maybe` is not one of reject, allow"),
    ],
)
def test_config_errors(registry, params, message):
    with pytest.raises(ConfigError, match=message):
        make(registry, **params)


@pytest.mark.parametrize(
    "item, message",
    [
        ({"ground_truth": [{"f": {"x": 1}}]}, "column 'ground_truth'\\[0\\] is not a tool call"),
        ({"ground_truth": "{oops"}, "column 'ground_truth' is not valid JSON"),
        (
            {"ground_truth": [{"f": {"x": [1]}}], "function": [{"name": "f", "parameters": {"type": "mapping"}}]},
            "tool 'f' uses the unknown type 'mapping'",
        ),
    ],
)
def test_a_broken_reference_is_an_error_not_a_zero(bfcl_grader, item, message):
    out = bfcl_grader.grade([Sample("", item=item, tool_calls=[call("f", x=1)])])[0]
    assert out.kind is OutcomeKind.GRADER_ERROR and out.score is None
    assert re.search(message, out.error or ""), out.error


def test_reference_parsing_helpers():
    assert bfcl_call({"f": {"x": [1, 2], "y": ["", "a"]}}) == ("f", {"x": [1, 2], "y": ["", "a"]})
    assert bfcl_call({"name": "f", "arguments": {"x": [1]}}) is None  # the bare call shape
    assert bfcl_call({"f": {"x": 1}}) is None  # BFCL lists allowed values
    assert reference_tool_calls(None) == []
    assert reference_tool_calls(TRIANGLE) == TRIANGLE["ground_truth"]
    assert reference_tool_calls({"tool_calls": [REF_CALL]}) == [REF_CALL]
    assert reference_tool_calls(REF_CALL) == [REF_CALL]


# -- against BFCL's own checker, when bfcl-eval is installed -----------------------------


def test_verdicts_agree_with_bfcls_checker_on_real_entries():
    pytest.importorskip("bfcl_eval", reason="bfcl-eval is not installed (pip install 'rftkit[bench]')")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bfcl_agreement.py"
    spec = importlib.util.spec_from_file_location("bfcl_agreement", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    per_cat, _, differences = bench.compare(list(bench.DEFAULT), limit=4)
    assert all(c["cases"] > 20 and c["bfcl_valid"] > 0 for c in per_cat.values()), per_cat
    assert differences == []
