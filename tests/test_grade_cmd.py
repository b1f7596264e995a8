"""`rft grade`: scoring saved completions from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rft.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

FLAKY = """
import rft

@rft.grader
def no_sevens(completion: str) -> float:
    if "7" in completion:
        raise ValueError("a seven")
    return 1.0

@rft.hookimpl
def rft_register_graders(register):
    register(no_sevens)
"""


def grade(*args: str):
    return runner.invoke(app, ["grade", *args], catch_exceptions=False)


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"{a}+{a}?", "answer": str(2 * a), "guess": str(2 * a + (a % 2))}) + "\n"
            for a in range(1, 7)
        )
    )
    return path


def test_shipped_example_scores_and_writes_results(tmp_path):
    out = tmp_path / "results.jsonl"
    result = grade(
        "--data",
        str(ROOT / "examples/grade/rows.jsonl"),
        "--completions",
        str(ROOT / "examples/grade/completions.jsonl"),
        "--graders",
        str(ROOT / "configs/graders.openai.json"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "answer_quality" in result.output and "reward (combined)" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12 and [r["row"] for r in records] == list(range(12))
    first = records[0]["graders"]["answer_quality"]
    assert first["kind"] == "score" and 0.0 <= first["score"] <= 1.0


def test_field_mode_grades_a_column_of_the_data(rows, tmp_path):
    graders = tmp_path / "g.yaml"
    graders.write_text("graders:\n  - name: exact_match\n")
    out = tmp_path / "out.jsonl"
    result = grade("--data", str(rows), "--field", "guess", "--graders", str(graders), "--out", str(out))
    assert result.exit_code == 0, result.output
    scores = [json.loads(line)["graders"]["exact_match"]["score"] for line in out.read_text().splitlines()]
    # guess = 2a + (a % 2): right for even a only
    assert scores == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_grader_errors_exit_1_and_show_the_first_failing_sample(rows, tmp_path):
    (tmp_path / "flaky.py").write_text(FLAKY)
    graders = tmp_path / "g.yaml"
    graders.write_text("plugins: [flaky.py]\ngraders:\n  - name: no_sevens\n  - name: exact_match\n")
    out = tmp_path / "out.jsonl"
    result = grade("--data", str(rows), "--field", "guess", "--graders", str(graders), "--out", str(out))
    assert result.exit_code == 1
    # guesses are 2, 4, 6, 8, 10, 12 + (a % 2): "7" appears in row 2 (guess 7) only
    assert "no_sevens: grader_error 1" in result.output
    assert "row 2, grader 'no_sevens' (grader_error)" in result.output
    assert "ValueError: a seven" in result.output
    # the results are still written, errors recorded with their kind — never as a 0
    rec = json.loads(out.read_text().splitlines()[2])["graders"]["no_sevens"]
    assert rec["kind"] == "grader_error" and rec["score"] is None


@pytest.mark.parametrize(
    "graders_yaml, completions, message",
    [
        # a grader asking for a column the data lacks fails before anything runs
        ("graders:\n  - name: exact_match\n", None, "grader 'exact_match' needs column 'answer'"),
        # completions must line up with rows
        ("graders:\n  - name: exact_match\n", ['"4"'], "1 completions for 6 rows"),
        # a bad line names the file and line
        ("graders:\n  - name: exact_match\n", ['"4"', "{not json"], ":2: invalid JSON"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(rows, tmp_path, graders_yaml, completions, message):
    graders = tmp_path / "g.yaml"
    graders.write_text(graders_yaml)
    data = rows
    if completions is None:  # drop the answer column
        data = tmp_path / "noanswer.jsonl"
        data.write_text("".join(json.dumps({"prompt": "1+1?", "guess": "2"}) + "\n" for _ in range(3)))
        args = ["--field", "guess"]
    else:
        comp = tmp_path / "c.jsonl"
        comp.write_text("\n".join(completions) + "\n")
        args = ["--completions", str(comp)]
    result = grade("--data", str(data), "--graders", str(graders), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(
    "row",
    [
        {"question": "1+1?", "answer": "2", "guess": "2"},
        {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}], "guess": "2"},
    ],
)
def test_graders_get_the_prompt_training_gives_them(row):
    from rft.cli.grade_cmd import load_samples
    from rft.data import to_example

    [(idx, sample)] = load_samples([row], completions=None, field="guess", data_file="d.jsonl")
    # the one row model: the same chat-message prompt as in training and evaluation
    assert idx == 0 and sample.prompt == [{"role": "user", "content": "1+1?"}]
    assert sample.prompt == to_example(row).prompt and "guess" not in sample.item


def test_a_failing_formula_is_counted_shown_and_written(rows, tmp_path):
    # `1 / zero` divides by a score of 0 on every row: no combined reward, and rft grade says why
    (tmp_path / "plug.py").write_text(
        "import rft\n\n@rft.grader\ndef zero(completion: str) -> float:\n    return 0.0\n"
    )
    (tmp_path / "g.yaml").write_text(
        "plugins: [plug.py]\ngraders:\n  - name: zero\n  - name: exact_match\nformula: '1 / zero'\n"
    )
    out = tmp_path / "results.jsonl"
    result = grade("--data", str(rows), "--field", "guess", "--graders", str(tmp_path / "g.yaml"), "--out", str(out))
    assert "no combined reward for 6 sample(s) (formula_error 6)" in " ".join(result.output.split())
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["reward"] is None and r["reward_error"]["kind"] == "formula_error" for r in records)
