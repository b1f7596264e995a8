"""Every plugin hook is documented in the README and exercised by a test (datasette's habit)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rft.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("rft_"))


def test_there_are_hooks():
    assert "rft_register_graders" in HOOKS and "rft_advisor_signals" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_saying_what_none_means(hook):
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert doc.strip(), f"{hook} has no docstring"
    assert "None" in doc or "ignored" in doc, f"{hook}'s docstring must say what returning None means"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_readme(hook):
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"`{hook}\b", readme), f"README.md does not document the hook {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_by_a_test_plugin(hook):
    # a test must define an implementation of the hook (in test code or a plugin file it writes)
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != Path(__file__).name)
    assert re.search(rf"def {hook}\(", sources), f"no test implements {hook}"
