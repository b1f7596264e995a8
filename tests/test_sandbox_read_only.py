"""Read-only host directories in the sandbox: visible at their own path, never writable."""

from __future__ import annotations

import os
import sys

import pytest

import rft.sandbox as sandbox
from rft.sandbox import SandboxError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

BACKENDS = [b for b, why in sandbox.available_backends().items() if why is None and b != "rlimits-only"]

PROGRAM = """
import os, sys
path = sys.argv[1]
print(open(os.path.join(path, "data.txt")).read())
try:
    open(os.path.join(path, "new.txt"), "w")
    print("WROTE")
except OSError as err:
    print(type(err).__name__, err.errno)
"""


@pytest.fixture
def shared(tmp_path):
    d = tmp_path / "libs"
    d.mkdir()
    (d / "data.txt").write_text("hello")
    for p in (tmp_path, d):
        os.chmod(p, 0o755)
    os.chmod(d / "data.txt", 0o644)
    return str(d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_only_directory_is_readable_and_never_writable(backend, shared):
    # under /tmp, which the sandbox covers with its own tmpfs: still shown, at its own path
    r = sandbox.run_python(PROGRAM, args=[shared], backend=backend, read_only=[shared])
    lines = r.stdout.split()
    assert r.ok, r.stderr
    assert lines[0] == "hello" and "WROTE" not in lines
    assert not os.path.exists(os.path.join(shared, "new.txt"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_read_only_a_tmp_directory_is_not_visible(backend, shared):
    r = sandbox.run_python(PROGRAM, args=[shared], backend=backend)
    assert not r.ok and "FileNotFoundError" in r.stderr


@pytest.mark.parametrize("paths", [["relative/dir"], ["/no/such/dir/here"], [__file__]])
def test_read_only_paths_are_checked(paths):
    with pytest.raises(SandboxError, match="read-only sandbox path"):
        sandbox.run_python("print(1)", read_only=paths)


def test_the_interpreter_runs_with_its_own_shared_library():
    # a pyenv interpreter under /root is shown at its own path, so its RUNPATH finds its
    # own libpython (not the system's of another release): ssl, which needs it, imports
    r = sandbox.run_python("import ssl, sys\nprint(sys.version)")
    assert r.ok, r.stderr
    assert r.stdout.strip() == sys.version
