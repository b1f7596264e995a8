"""`rft submit` staging without Ray: every local file a config names travels with the job, wherever
it lies, with its path rewritten in the staged copy; and a bad config fails before anything is sent.

(The end-to-end run of `rft submit configs/tiny.yaml` on a loopback Ray head is in
tests/test_cluster_jobs.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sibling_project(tmp_path: Path) -> Path:
    """A config in project/configs/ naming data, a grader-set file (which names a plugin next to
    it) and a local model folder, all in sibling folders of configs/ — the repo's own layout."""
    root = tmp_path / "project"
    for d in ("configs", "data", "graders", "models/small", "runs/old"):
        (root / d).mkdir(parents=True)
    (root / "data" / "train.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n' * 4)
    (root / "data" / "eval.jsonl").write_text('{"prompt": "3+3?", "answer": "6"}\n')
    (root / "graders" / "set.yaml").write_text("plugins: [sibling_graders.py]\ngraders:\n  - name: exact_match\n")
    (root / "graders" / "sibling_graders.py").write_text("import rft\n")
    (root / "models" / "small" / "config.json").write_text("{}")
    (root / "runs" / "old" / "huge.bin").write_bytes(b"x" * 4096)  # an output: never sent
    (root / "configs" / "run.yaml").write_text(
        "# a run whose inputs live next to configs/, not inside it\n"
        "output_dir: ../runs/old\n"
        "model: ../models/small     # a local HF folder\n"
        "data:\n"
        "  train: ../data/train.jsonl\n"
        "  eval: '../data/eval.jsonl'\n"
        "graders: ../graders/set.yaml\n"
        "stages:\n"
        "  rft: {num_generations: 2, trl: {max_steps: 1, per_device_train_batch_size: 2}}\n"
    )
    return root


def test_files_in_sibling_folders_are_staged_and_their_paths_rewritten(sibling_project, tmp_path):
    from rft.cluster.staging import OUTSIDE_DIR, stage_run
    from rft.config import load_config

    config = sibling_project / "configs" / "run.yaml"
    dest = tmp_path / "stage"
    staged = stage_run(load_config(config), dest)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    # data (train and eval share a folder), the grader-set file with the plugin it names, the model;
    # not the output directory
    assert files == sorted(
        [
            f"{OUTSIDE_DIR}/1-models/small/config.json",
            f"{OUTSIDE_DIR}/2-data/train.jsonl",
            f"{OUTSIDE_DIR}/2-data/eval.jsonl",
            f"{OUTSIDE_DIR}/3-graders/set.yaml",
            f"{OUTSIDE_DIR}/3-graders/sibling_graders.py",
            "run.yaml",
        ]
    )
    text = (dest / "run.yaml").read_text()
    # only the path strings change: comments and line numbers stay as the user wrote them
    assert text.splitlines()[0] == "# a run whose inputs live next to configs/, not inside it"
    assert len(text.splitlines()) == len(config.read_text().splitlines())
    assert f'model: "{OUTSIDE_DIR}/1-models/small"     # a local HF folder' in text
    assert "output_dir: ../runs/old" in text  # outputs resolve on the cluster, as written
    # the staged config loads, and every input resolves to the staged copy
    cfg = load_config(dest / "run.yaml")
    assert cfg.data.train.resolve() == (dest / OUTSIDE_DIR / "2-data" / "train.jsonl").resolve()
    assert cfg.data.eval is not None and cfg.data.eval.read_text() == '{"prompt": "3+3?", "answer": "6"}\n'
    assert cfg.resolve_path(cfg.model.name).resolve() == (dest / OUTSIDE_DIR / "1-models" / "small").resolve()
    assert cfg.graders == f"{OUTSIDE_DIR}/3-graders/set.yaml"
    # the grader-set file keeps naming its plugin next to it (same folder, nothing to rewrite)
    assert (dest / cfg.graders).read_text() == (sibling_project / "graders" / "set.yaml").read_text()
    assert staged.files[(sibling_project / "data" / "train.jsonl").resolve()] == f"{OUTSIDE_DIR}/2-data/train.jsonl"


def test_nested_file_references_are_rewritten_from_their_own_folder(sibling_project, tmp_path):
    # a grader-set file inside configs/ naming a plugin outside it: the staged grader-set file
    # names the staged plugin relative to itself
    from rft.cluster.staging import stage_run
    from rft.config import load_config

    configs = sibling_project / "configs"
    (configs / "sets").mkdir()
    (configs / "sets" / "g.yaml").write_text("plugins: [../../graders/sibling_graders.py]\ngraders: [exact_match]\n")
    run = configs / "run.yaml"
    run.write_text(run.read_text().replace("graders: ../graders/set.yaml", "graders: sets/g.yaml"))
    dest = tmp_path / "stage"
    stage_run(load_config(run), dest)
    staged_set = (dest / "sets" / "g.yaml").read_text()
    assert staged_set.startswith('plugins: ["../_outside/')
    ref = staged_set.split('"')[1]
    assert (dest / "sets" / ref).resolve().read_text() == "import rft\n"


def test_a_bad_config_fails_before_anything_is_sent(sibling_project, monkeypatch):
    """`rft submit` validates with load_config, as `rft train` does, before talking to the cluster."""
    from typer.testing import CliRunner

    import rft.cluster.jobs
    from rft.cli.main import app

    def no_client(address):
        raise AssertionError("the cluster was contacted for a config that does not load")

    monkeypatch.setattr(rft.cluster.jobs, "job_client", no_client)
    config = sibling_project / "configs" / "run.yaml"
    text = config.read_text()
    cases = [
        # the same message `rft train` gives: file, line, key and the close match
        (text.replace("stages:", "stagse:"), ["run.yaml:8", "did you mean 'stages'"]),
        # TRL keys are checked as `rft train` checks them
        (text.replace("max_steps: 1", "max_step: 1"), ["stages.rft.trl.max_step", "did you mean 'max_steps'"]),
        # an input that is not there would only fail on the cluster: it fails here
        (text.replace("../data/train.jsonl", "../data/missing.jsonl"), ["data.train", "missing.jsonl"]),
    ]
    for bad, fragments in cases:
        config.write_text(bad)
        res = CliRunner().invoke(app, ["submit", str(config), "--address", "http://127.0.0.1:9"])
        out = "".join(res.output.split())  # the console wraps long lines, even inside words
        assert res.exit_code == 2, res.output
        for frag in fragments:
            assert "".join(frag.split()) in out, res.output


def test_tiny_model_folder_and_plugin_files_outside_the_config_folder(sibling_project, tmp_path):
    # `tiny:DIR` keeps its prefix; a --plugin file outside the config's folder is passed on by its staged path
    from rft.cluster.staging import OUTSIDE_DIR, stage_run
    from rft.config import load_config

    (sibling_project / "models" / "t").mkdir()
    (sibling_project / "models" / "t" / "config.json").write_text("{}")
    (sibling_project / "plugins").mkdir()
    (sibling_project / "plugins" / "extra.py").write_text("import rft\n")
    run = sibling_project / "configs" / "run.yaml"
    run.write_text(run.read_text().replace("model: ../models/small", "model: tiny:../models/t"))
    dest = tmp_path / "stage"
    staged = stage_run(load_config(run), dest, plugin_files=[sibling_project / "plugins" / "extra.py"])
    assert f'model: "tiny:{OUTSIDE_DIR}/1-models/t"' in (dest / "run.yaml").read_text()
    assert (dest / OUTSIDE_DIR / "1-models" / "t" / "config.json").is_file()
    assert staged.plugins == [f"{OUTSIDE_DIR}/4-plugins/extra.py"] and (dest / staged.plugins[0]).is_file()
