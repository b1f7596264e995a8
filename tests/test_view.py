"""`rft view`'s server: the API over a run directory (paging, filters, live growth, read-only).

The run directories here are written by :func:`write_run` without training, shaped exactly
as ``rft train`` writes them (rft/train/rewards.py, callbacks.py, eval.py, pipeline.py);
tests/test_view_train.py checks the viewer on a real tiny ``rft train`` run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rft.cli.main import app as cli
from rft.view import LineIndex, create_app

GRADERS = ("exact_match", "format")


def rollout(
    step: int, index: int, prompt: str, completion: str, exact: float | None, fmt: dict[str, Any]
) -> dict[str, Any]:
    """One line of rollouts.jsonl as RewardBridge writes it."""
    graders: dict[str, Any] = {"exact_match": {"score": exact, "kind": "score"}, "format": fmt}
    if exact is None:
        graders["exact_match"] = {"kind": "not_applicable"}
    scores = [exact or 0.0, fmt.get("score") or 0.0]
    return {
        "step": step,
        "index": index,
        "prompt": [{"role": "system", "content": "Answer with a number."}, {"role": "user", "content": prompt}],
        "completion": completion,
        "reward": 1.0 * scores[0] + 0.5 * scores[1],
        "graders": {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in graders.items()},
    }


def rollout_lines(steps: int = 3, prompts: int = 2, generations: int = 4, start: int = 0) -> list[dict[str, Any]]:
    """``steps`` batches of ``prompts`` GRPO groups of ``generations`` completions each.

    Step 1's second group is zero-variance (every completion the same reward); step 2 has a
    format grader error; a completion of step 0 says "banana" with a reason that says "hack" (and
    carries a ``trajectory``, a field the viewer does not know).
    """
    out = []
    for step in range(start, start + steps):
        i = 0
        for p in range(prompts):
            a, b = p + step, 2 * p + 1
            for g in range(generations):
                correct = g % 2 == 0 and not (step == 1 and p == 1)
                completion = f"The answer is {a + b}." if correct else f"I think {a + b + g + 1}"
                fmt: dict[str, Any] = {
                    "score": 1.0 if completion.startswith("The") else 0.0,
                    "kind": "score",
                    "reason": "starts with 'The answer is'"
                    if completion.startswith("The")
                    else "no 'The answer is' prefix",
                }
                if step == 1 and p == 1:
                    fmt = {"score": 0.0, "kind": "score", "reason": "no 'The answer is' prefix"}
                if step == 0 and p == 0 and g == 1:
                    completion, fmt = (
                        "banana banana banana",
                        {"score": 1.0, "kind": "score", "reason": "reward hack: format passes on fruit"},
                    )
                if step == 2 and p == 0 and g == 3:
                    fmt = {"kind": "grader_error", "error": "ValueError: could not parse the completion (line 3)"}
                exact = 1.0 if correct else 0.0
                rec = rollout(step, i, f"What is {a} + {b}?", completion, exact, fmt)
                if completion.startswith("banana"):  # a field of a newer record kind, shown as is
                    rec["trajectory"] = [{"tool": "fruit_counter", "result": 3}]
                out.append(rec)
                i += 1
    return out


def metric_lines(steps: int = 3) -> list[dict[str, Any]]:
    """metrics.jsonl: SFT records, RFT records with TRL's and rftkit's keys, and the end-of-stage records."""
    recs: list[dict[str, Any]] = [
        {
            "stage": "sft",
            "step": s,
            "loss": 2.0 - 0.3 * s,
            "grad_norm": 1.0,
            "learning_rate": 0.0002,
            "step_time_s": 0.1,
        }
        for s in (1, 2)
    ]
    recs.append({"stage": "sft", "step": 2, "train_runtime": 0.2, "train_loss": 1.6, "epoch": 0.3})
    for s in range(1, steps + 1):
        r: dict[str, Any] = {
            "stage": "rft",
            "step": s,
            "loss": 0.01 * s,
            "kl": 0.001 * s,
            "completions/mean_length": 6.0 + s,
        }
        r["completions/max_length"] = 8.0
        for g, mean in zip(GRADERS, (0.2 * s, 0.3 + 0.1 * s), strict=True):
            r[f"rewards/{g}/mean"] = mean
            r[f"rewards/{g}/std"] = 0.1
            r[f"graders/{g}/mean"] = mean
            r[f"graders/{g}/latency_p95"] = 0.001 * s
            r[f"graders/{g}/error_rate"] = 0.125 if (g == "format" and s == 3) else 0.0
        r["reward"] = r["rewards/exact_match/mean"] + 0.5 * r["rewards/format/mean"]
        r["reward_std"] = 0.2
        r["frac_reward_zero_std"] = 0.5 if s == 2 else 0.0
        r["step_time_s"] = 0.3
        recs.append(r)
    recs.append({"stage": "rft", "step": steps, "train_runtime": 1.0, "train_loss": 0.02})
    return recs


def eval_json() -> dict[str, Any]:
    """eval.json: base, sft and rft over the same 3 held-out rows; row 2 regresses after RFT."""

    def phase(completions: list[str], rewards: list[float]) -> dict[str, Any]:
        return {
            "n": 3,
            "mean_reward": sum(rewards) / 3,
            "pass_rate": sum(r >= 1.0 for r in rewards) / 3,
            "graders": {g: {"mean": sum(rewards) / 3, "pass_rate": 0.5, "scored": 3, "errors": 0} for g in GRADERS},
            "samples": [
                {
                    "prompt": f"What is {i} + {i}?",
                    "completion": c,
                    "reward": r,
                    "scores": {"exact_match": r, "format": 1.0},
                }
                for i, (c, r) in enumerate(zip(completions, rewards, strict=True))
            ],
        }

    return {
        "base": phase(["zero", "two?", "four"], [0.0, 0.0, 1.0]),
        "sft": phase(["The answer is 0.", "The answer is 2.", "The answer is 4."], [1.0, 1.0, 1.0]),
        "rft": phase(["The answer is 0.", "The answer is 2.", "The answer is 5."], [1.0, 1.0, 0.0]),
    }


def write_jsonl(path: Path, records: list[dict[str, Any]], mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def write_run(root: Path, *, steps: int = 3, finished: bool = True) -> Path:
    """A run directory shaped like ``rft train``'s output, without training."""
    root.mkdir(parents=True, exist_ok=True)
    run: dict[str, Any] = {
        "config": "0123456789abcdef",
        "model": {"name": "tiny", "path": "/m", "gguf_file": None, "dtype": "auto"},
        "stages": ["sft", "rft"],
        "started": 1.0,
    }
    if finished:
        run["finished"] = 2.0
    (root / "run.json").write_text(json.dumps(run, indent=2))
    write_jsonl(root / "metrics.jsonl", metric_lines(steps))
    write_jsonl(root / "rollouts.jsonl", rollout_lines(steps))
    (root / "eval.json").write_text(json.dumps(eval_json(), indent=2))
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


@pytest.fixture
def client(run_dir: Path):
    from fastapi.testclient import TestClient

    return TestClient(create_app([run_dir]))


def groups(client, **params) -> dict[str, Any]:
    r = client.get("/api/runs/0/groups", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- the API


def test_runs_and_steps_describe_the_run(client, run_dir):
    runs = client.get("/api/runs").json()
    assert runs[0]["name"] == "run" and runs[0]["graders"] == ["exact_match", "format"] and runs[0]["finished"]
    steps = client.get("/api/runs/0/steps").json()
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert all(s["completions"] == 8 and s["groups"] == 2 for s in steps)
    # rollouts generated at trainer step s are logged (rewards/…) at step s + 1
    assert [s["logged_step"] for s in steps] == [1, 2, 3]
    assert [s["zero_variance"] for s in steps] == [0, 1, 0]


def test_groups_keep_a_grpo_group_together_with_its_reward_spread(client):
    page = groups(client, step=0)
    assert page["total"] == 2
    g = page["groups"][0]
    assert g["prompt"] == "What is 0 + 1?" and g["n"] == 4 and [c["index"] for c in g["completions"]] == [0, 1, 2, 3]
    assert g["spread"] == pytest.approx(1.5) and not g["zero_variance"]
    # each grader's score, kind and reason per completion
    banana = g["completions"][1]
    assert banana["completion"] == "banana banana banana"
    assert banana["graders"]["format"] == {
        "score": 1.0,
        "kind": "score",
        "reason": "reward hack: format passes on fruit",
        "error": None,
    }


def test_paging_walks_every_group_once(client):
    seen = []
    offset = 0
    while True:
        page = groups(client, limit=4, offset=offset)
        assert page["total"] == 6
        seen += [g["id"] for g in page["groups"]]
        offset += 4
        if offset >= page["total"]:
            break
    assert sorted(seen) == list(range(6)) and len(seen) == 6
    assert groups(client, offset=6)["groups"] == []
    newest = groups(client, sort="-step", limit=1)["groups"][0]
    assert newest["step"] == 2


def test_filters_by_grader_score_range_kind_variance_and_text(client):
    # "scored 1.0 on the format grader but 0 on correctness": two filters, one completion each
    fmt_ok = groups(client, grader="format", lo=1, hi=1, step=0)
    matched = [c for g in fmt_ok["groups"] for c in g["completions"] if c["match"]]
    assert matched and all(c["graders"]["format"]["score"] == 1.0 for c in matched)
    # the error kind of one grader
    errs = groups(client, grader="format", kind="grader_error")
    hits = [c for g in errs["groups"] for c in g["completions"] if c["match"]]
    assert len(hits) == 1 and hits[0]["graders"]["format"]["error"].startswith("ValueError")
    assert groups(client, kind="error")["total"] == 1
    assert groups(client, grader="exact_match", kind="grader_error")["total"] == 0
    # zero-variance groups: no learning signal
    zv = groups(client, zero_variance="true")
    assert zv["total"] == 1 and zv["groups"][0]["step"] == 1 and zv["groups"][0]["zero_variance"]
    # text search in completions, prompts and reasons, case-insensitive
    assert [c["completion"] for g in groups(client, q="BANANA")["groups"] for c in g["completions"] if c["match"]] == [
        "banana banana banana"
    ]
    assert groups(client, q="reward hack")["total"] == 1
    assert groups(client, q="What is 2 + 3")["total"] == 1  # a prompt
    assert groups(client, q="graders")["total"] == 0  # a JSON key is not text
    # the combined reward's range
    top = groups(client, lo=1.5)
    assert all(c["reward"] >= 1.5 for g in top["groups"] for c in g["completions"] if c["match"])


def test_bad_filters_are_400_with_the_reason(client):
    r = client.get("/api/runs/0/groups", params={"grader": "nope"})
    assert r.status_code == 400 and "exact_match, format" in r.json()["detail"]
    assert client.get("/api/runs/0/groups", params={"sort": "x"}).status_code == 400
    assert client.get("/api/runs/7/groups").status_code == 404


def test_a_completion_opens_in_full_with_its_prompt(client, run_dir):
    long = rollout(3, 0, "Write a lot", "x" * 5000, 0.0, {"score": 0.0, "kind": "score"})
    long["trajectory"] = [{"tool": "calc"}]  # a newer record field is shown, not dropped
    write_jsonl(run_dir / "rollouts.jsonl", [long], mode="a")
    page = groups(client, step=3)
    short = page["groups"][0]["completions"][0]
    assert short["truncated"] and len(short["completion"]) < 1000
    full = client.get(f"/api/runs/0/rollouts/{short['line']}").json()
    assert full["record"]["completion"] == "x" * 5000
    assert full["record"]["prompt"][0] == {"role": "system", "content": "Answer with a number."}
    assert full["record"]["trajectory"] == [{"tool": "calc"}] and full["group"] == [short["line"]]
    assert client.get("/api/runs/0/rollouts/99999").status_code == 404


def test_metrics_are_served_incrementally(client):
    everything = client.get("/api/runs/0/metrics").json()
    assert len(everything["records"]) == 7
    rft = [r for r in everything["records"] if r["stage"] == "rft" and "loss" in r]
    assert rft[0]["rewards/format/mean"] == pytest.approx(0.4) and "graders/format/latency_p95" in rft[0]
    assert client.get("/api/runs/0/metrics", params={"start": 5}).json()["records"] == everything["records"][5:]


def test_evals_side_by_side_per_held_out_row(client):
    ev = client.get("/api/runs/0/eval").json()
    assert ev["phases"] == ["base", "sft", "rft"]
    assert ev["summary"]["rft"]["mean_reward"] == pytest.approx(2 / 3)
    rows = ev["rows"]
    assert [r["regressed"] for r in rows] == [False, False, True]
    assert rows[2]["change"] == -1.0 and rows[0]["change"] == 1.0
    assert rows[2]["phases"]["rft"]["completion"] == "The answer is 5." and rows[2]["completion_changed"]


def test_a_run_without_eval_or_rollouts_yet_is_an_empty_page_not_an_error(tmp_path):
    from fastapi.testclient import TestClient

    root = tmp_path / "started"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"stages": ["rft"], "started": 1.0}))
    c = TestClient(create_app([root]))
    assert c.get("/api/runs").json()[0]["finished"] is False
    assert c.get("/api/runs/0/groups").json() == {"total": 0, "offset": 0, "lines": 0, "groups": []}
    assert c.get("/api/runs/0/eval").json() == {"phases": [], "summary": {}, "rows": []}
    assert c.get("/api/runs/0/metrics").json()["records"] == []


def test_several_runs_side_by_side(tmp_path):
    from fastapi.testclient import TestClient

    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", steps=2)
    c = TestClient(create_app([a, b]))
    assert [r["name"] for r in c.get("/api/runs").json()] == ["a", "b"]
    assert [s["rollout_lines"] for s in c.get("/api/status").json()] == [24, 16]
    assert c.get("/api/runs/1/groups").json()["total"] == 4


def test_the_page_and_its_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("app.js", "style.css", "favicon.svg"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and r.content
        # nothing is loaded from elsewhere: the page works offline
        assert "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text
    assert "https://" not in page.text and "http://" not in page.text


# ---------------------------------------------------------------------------- live and large


def test_live_growth_is_followed_and_a_partial_line_waits(client, run_dir):
    before = client.get("/api/status").json()[0]
    assert before["rollout_lines"] == 24
    more = rollout_lines(steps=1, start=3)
    text = "".join(json.dumps(r) + "\n" for r in more)
    with (run_dir / "rollouts.jsonl").open("a") as f:
        f.write(text[:-40])  # the trainer is mid-write: the last line is incomplete
    status = client.get("/api/status").json()[0]
    assert status["rollout_lines"] == 31
    with (run_dir / "rollouts.jsonl").open("a") as f:
        f.write(text[-40:])
    assert client.get("/api/status").json()[0]["rollout_lines"] == 32
    assert groups(client, step=3)["total"] == 2
    write_jsonl(run_dir / "metrics.jsonl", [{"stage": "rft", "step": 4, "loss": 0.5}], mode="a")
    assert client.get("/api/runs/0/metrics", params={"start": 7}).json()["records"] == [
        {"stage": "rft", "step": 4, "loss": 0.5}
    ]
    time.sleep(0.01)
    ev = eval_json()
    del ev["rft"]
    (run_dir / "eval.json").write_text(json.dumps(ev))
    assert client.get("/api/status").json()[0]["eval_mtime"] != before["eval_mtime"]
    assert client.get("/api/runs/0/eval").json()["phases"] == ["base", "sft"]


def test_a_file_rewritten_shorter_on_resume_is_read_again(client, run_dir):
    # rft train --resume drops the rollouts logged after the checkpoint it resumes from
    assert client.get("/api/status").json()[0]["rollouts_generation"] == 0
    lines = (run_dir / "rollouts.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "rollouts.jsonl").write_text("".join(lines[:8]))
    status = client.get("/api/status").json()[0]
    assert status["rollout_lines"] == 8 and status["rollouts_generation"] == 1
    assert [s["step"] for s in client.get("/api/runs/0/steps").json()] == [0]


def test_a_broken_line_is_reported_with_file_and_line_and_skipped(client, run_dir):
    with (run_dir / "rollouts.jsonl").open("a") as f:
        f.write("{not json\n")
    status = client.get("/api/status").json()[0]
    assert any("rollouts.jsonl:25" in p and "not valid JSON" in p for p in status["problems"])
    assert groups(client)["total"] == 6


def test_the_viewer_never_writes_into_the_run_directory(client, run_dir):
    before = snapshot(run_dir)
    for path in ("/api/runs", "/api/status", "/api/runs/0/steps", "/api/runs/0/metrics", "/api/runs/0/eval", "/"):
        assert client.get(path).status_code == 200
    groups(client, q="banana")
    client.get("/api/runs/0/rollouts/0")
    assert snapshot(run_dir) == before


def test_the_line_index_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "x.jsonl"
    index = LineIndex(path)
    assert index.refresh() == [] and len(index) == 0  # not there yet
    write_jsonl(path, [{"a": i} for i in range(3)])
    assert [n.record for n in index.refresh()] == [{"a": 0}, {"a": 1}, {"a": 2}]
    end = index.end
    write_jsonl(path, [{"a": 3}], mode="a")
    new = index.refresh()
    assert [(n.number, n.record) for n in new] == [(3, {"a": 3})] and index.offsets[3] == end
    assert index.read(1) == {"a": 1} and index.read_many([3, 0]) == {0: {"a": 0}, 3: {"a": 3}}
    os.replace(_write(tmp_path / "y.jsonl", [{"b": 1}]), path)  # replaced: a new file
    assert [n.record for n in index.refresh()] == [{"b": 1}] and index.generation == 1


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    write_jsonl(path, records)
    return path


def test_a_large_run_is_paged_from_the_server(tmp_path):
    """100k rollout lines: filtering and paging stay on the server; a page is small."""
    from fastapi.testclient import TestClient

    root = tmp_path / "big"
    root.mkdir()
    (root / "run.json").write_text("{}")
    base = rollout_lines(steps=1, prompts=2, generations=8)
    with (root / "rollouts.jsonl").open("w") as f:
        for step in range(6250):  # 6250 steps × 16 completions = 100,000 lines
            for r in base:
                f.write(json.dumps({**r, "step": step}) + "\n")
    c = TestClient(create_app([root]))
    t0 = time.perf_counter()
    first = c.get("/api/runs/0/groups", params={"limit": 20})
    elapsed = time.perf_counter() - t0
    assert first.status_code == 200 and first.json()["lines"] == 100_000 and first.json()["total"] == 12_500
    assert len(first.content) < 100_000  # one page, not the run
    last = c.get("/api/runs/0/groups", params={"step": 6249}).json()
    assert [g["step"] for g in last["groups"]] == [6249, 6249]
    assert c.get("/api/runs/0/groups", params={"q": "banana", "limit": 5}).json()["total"] == 6250
    # a later request reads only what was appended (here: nothing)
    t1 = time.perf_counter()
    c.get("/api/status")
    assert time.perf_counter() - t1 < max(1.0, elapsed / 2)


# ---------------------------------------------------------------------------- the command


def test_rft_view_refuses_what_is_not_a_run_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["view", str(tmp_path / "missing"), str(tmp_path / "empty")])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "missing: no such directory" in out and "not an rftkit run directory" in out


def test_rft_view_serves_on_loopback_and_prints_its_url(run_dir):
    import subprocess
    import sys

    import httpx

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rft", "view", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("rft view: http://127.0.0.1:"), line
        url = line.split()[2]
        deadline = time.time() + 20
        while True:
            try:
                r = httpx.get(url + "api/runs", timeout=2)
                break
            except httpx.TransportError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert r.json()[0]["path"] == str(run_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rft_view_says_how_to_get_past_a_taken_port(run_dir):
    from rft.cli.view import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        res = CliRunner().invoke(cli, ["view", str(run_dir), "--port", str(port)])
        assert res.exit_code == 2
        out = " ".join(res.output.split())
        assert f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out
    finally:
        taken.close()
