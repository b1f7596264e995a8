"""`rft submit` and `rft jobs` against a real Ray head started with `ray start --head` on 127.0.0.1.

The head runs with token auth (its own token file, so the test neither needs nor touches
~/.ray/auth_token); every `rft` call is a subprocess with the same RAY_AUTH_* settings, as a
user's shell would be. The head is stopped by killing its own process group (never `ray stop`,
which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A Ray head on loopback with a dashboard (Jobs API); yields (dashboard_url, env)."""
    tmp = Path(tempfile.mkdtemp(prefix="rft-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    token = tmp / "token"
    token.write_text(uuid.uuid4().hex)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_USAGE_STATS_ENABLED="0",
    )
    dash = _free_port()
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={_free_port()}", "--num-cpus=2", "--include-dashboard=true",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
        f"--temp-dir={tmp / 'r'}", "--disable-usage-stats",
    ]  # fmt: skip
    log = open(tmp / "head.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{(tmp / 'head.log').read_text()[-3000:]}")
            r = subprocess.run(
                [str(BIN / "rft"), "jobs", "list", "--json", "--address", url], env=env, capture_output=True, text=True
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the Jobs API at {url} did not come up in 90 s: {r.stderr[-2000:]}")
            time.sleep(1)
        yield url, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` shuts its node down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def rft(env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "rft"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def submit(
    head: tuple[str, dict[str, str]], project: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess:
    """``rft submit run.yaml --address URL ARGS…`` from the project's folder."""
    url, env = head
    return rft(env, "submit", "run.yaml", "--address", url, *args, cwd=project, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config that names a data file and a grader-set file, which names a plugin file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n')
    (tmp_path / "graders.yaml").write_text("graders:\n  - name: exact_match\nplugins: [my_graders.py]\n")
    (tmp_path / "my_graders.py").write_text("import rft\n")
    (tmp_path / "extra_plugin.py").write_text("import rft\n")
    (tmp_path / "unrelated.txt").write_text("must not travel\n")
    (tmp_path / "run.yaml").write_text(
        "model: tiny\ndata:\n  train: data/train.jsonl\ngraders: graders.yaml\nstages:\n  rft: {trl: {max_steps: 1}}\n"
    )
    return tmp_path


def _status(env: dict[str, str], url: str, job_id: str) -> str:
    r = rft(env, "jobs", "status", job_id, "--address", url, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["status"]


def test_submit_stages_config_files_and_jobs_commands_read_it(head, project):
    url, env = head
    # The job lists its working directory: the config, what it names (data, grader file, the
    # plugin the grader file names) and the --plugin file must be there; unrelated files not.
    check = "python -c \"import os; print('FILES', sorted(os.path.relpath(os.path.join(d, f)) for d, _, fs in os.walk('.') for f in fs))\""
    r = submit(head, project, "--plugin", "extra_plugin.py", "--command", check, "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.splitlines()[0].strip()
    assert "SUCCEEDED" in r.stdout

    assert _status(env, url, job_id) == "SUCCEEDED"
    logs = rft(env, "jobs", "logs", job_id, "--address", url)
    assert logs.returncode == 0
    files_line = next(line for line in logs.stdout.splitlines() if line.startswith("FILES"))
    for staged in ("run.yaml", "data/train.jsonl", "graders.yaml", "my_graders.py", "extra_plugin.py"):
        assert repr(staged) in files_line, files_line
    assert "unrelated.txt" not in files_line

    listed = json.loads(rft(env, "jobs", "list", "--address", url, "--json").stdout)
    assert {"job_id": job_id, "status": "SUCCEEDED"}.items() <= next(j for j in listed if j["job_id"] == job_id).items()


def test_failed_job_is_reported_failed_and_wait_exits_nonzero(head, project):
    url, env = head
    r = submit(head, project, "--command", "python -c 'raise SystemExit(3)'", "--wait")
    assert r.returncode == 1  # --wait mirrors the job's outcome in the exit code
    assert _status(env, url, r.stdout.splitlines()[0].strip()) == "FAILED"


def test_stop_a_running_job(head, project):
    url, env = head
    r = submit(head, project, "--command", "sleep 120", "--job-id", "rft-stop-me")
    assert r.returncode == 0, r.stderr
    assert rft(env, "jobs", "stop", "rft-stop-me", "--address", url).returncode == 0
    deadline = time.monotonic() + 60
    while (state := _status(env, url, "rft-stop-me")) not in {
        "STOPPED",
        "FAILED",
        "SUCCEEDED",
    } and time.monotonic() < deadline:
        time.sleep(1)
    assert state == "STOPPED"


def test_unknown_job_and_missing_address_fail_with_a_message(head, project):
    url, env = head
    r = rft(env, "jobs", "status", "no-such-job", "--address", url)
    assert r.returncode == 2 and "no-such-job" in r.stdout
    bare = {k: v for k, v in env.items() if k not in {"RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"}}
    r = rft(bare, "jobs", "list")
    assert r.returncode == 2 and "--address" in r.stdout


def test_submit_rft_train_writes_the_adapter(head, tmp_path):
    """`rft submit` of a real run: the staged config, data and plugin file train on the cluster
    (one learner, one grader actor, through `scaling:`) and the run directory gets the adapter."""
    url, env = head
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "tiny" / "train.jsonl", project / "data" / "train.jsonl")
    shutil.copy(ROOT / "examples" / "tiny" / "graders.py", project / "my_graders.py")
    (project / "run.yaml").write_text(
        f"model: tiny:{tmp_path / 'tiny-model'}\n"  # absolute: built once, read by every node (one machine here)
        "data: {train: data/train.jsonl, eval_size: 0}\n"
        "graders:\n  plugins: [my_graders.py]\n  graders:\n    - {name: brevity, max_chars: 16}\n"
        "lora: {r: 4, alpha: 8}\n"
        "stages:\n  rft:\n    num_generations: 2\n    max_completion_length: 8\n"
        "    trl: {max_steps: 1, per_device_train_batch_size: 2, save_steps: 1}\n"
        "eval: {enabled: false}\n"
        "scaling:\n  num_learners: 1\n  graders: {num_actors: 1, num_cpus: 0}\n"
    )
    run_dir = tmp_path / "run"  # absolute: storage the job's processes reach
    r = submit(head, project, "--output-dir", str(run_dir), "--train-arg=--no-progress", "--wait", timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    job_id = r.stdout.splitlines()[0].strip()
    assert _status(env, url, job_id) == "SUCCEEDED"
    assert "done: adapter in" in rft(env, "jobs", "logs", job_id, "--address", url).stdout
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


def test_submit_the_shipped_tiny_config_from_the_repo_root(head):
    """The issue's case: configs/tiny.yaml names ../examples/tiny/* (outside its folder). Run from
    the repo root, `rft submit` stages those files, rewrites their paths and the job trains."""
    url, env = head
    r = rft(env, "submit", "configs/tiny.yaml", "--address", url, "--wait", cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    job_id = r.stdout.splitlines()[0].strip()
    assert _status(env, url, job_id) == "SUCCEEDED"
    logs = rft(env, "jobs", "logs", job_id, "--address", url).stdout
    assert "done: adapter in" in logs and "file not found" not in logs


# --------------------------------------------------------------------------- staging (no Ray)


def test_staging_keeps_the_layout_and_refuses_large_inputs(project, tmp_path):
    from rft.cluster.jobs import build_runtime_env
    from rft.cluster.staging import stage_run
    from rft.config import load_config
    from rft.core.errors import ConfigError

    dest = tmp_path / "stage"
    cfg = load_config(project / "run.yaml")
    staged = stage_run(cfg, dest, plugin_files=[project / "extra_plugin.py"])
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    # the config, what it names, the plugin its grader file names, the --plugin file; nothing else
    assert files == ["data/train.jsonl", "extra_plugin.py", "graders.yaml", "my_graders.py", "run.yaml"]
    assert staged.config == "run.yaml" and staged.plugins == ["extra_plugin.py"]
    # nothing outside the config's folder: the staged config is the original, byte for byte
    assert (dest / "run.yaml").read_text() == (project / "run.yaml").read_text()
    env = build_runtime_env(dest, pip=["rft-graders-sql==0.3"])
    assert env["working_dir"] == str(dest) and env["pip"] == ["rft-graders-sql==0.3"]
    assert env["env_vars"]["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0"  # else Ray Train floods logs
    with pytest.raises(ConfigError, match="storage every node reads"):
        stage_run(cfg, tmp_path / "small", max_bytes=10)
