"""Grader sets from configs and files: names looked up in the plugin registry.

A grader-set config is a ``graders:`` list (registered graders by ``name:``, OpenAI
grader objects by ``type:``), an optional ``formula:`` (or OpenAI's
``calculate_output``) and ``plugins:`` to load first: files or modules, with or without
hooks — naming ``trl.rewards`` makes ``- name: accuracy_reward`` work (see
:mod:`rft.plugins.manager`). A set built here records that
config as its ``spec`` so a worker process or Ray actor rebuilds the same set with
:func:`grader_set_from_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy

from rft.core import GraderSet, build_entry, load_yaml_or_json
from rft.core.errors import ConfigError, did_you_mean
from rft.plugins.manager import get_plugin_manager, get_registry, resolve_plugin_paths

__all__ = ["grader_set_from_config", "grader_set_from_file", "grader_set_from_spec"]

_SET_KEYS = ("graders", "formula", "calculate_output", "plugins")


def grader_set_from_file(
    path: str | Path, *, plugins: Sequence[str] = (), pm: pluggy.PluginManager | None = None
) -> GraderSet:
    """Load a grader-set file (YAML or JSON): a ``graders:`` list, or one OpenAI grader object.

    Args:
        path: the file; plugin files it names are relative to its folder.
        plugins: more plugin files or modules to load (e.g. from ``--plugin``).
        pm: a plugin manager to use instead of building one.

    Raises:
        ConfigError: the file is unreadable or invalid (naming the file, line and key).
        PluginError: a plugin fails to load.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read grader-set file: {err.strerror}", file=str(path)) from err
    cfg = load_yaml_or_json(text, str(path))
    return grader_set_from_config(cfg, file=str(path), base_dir=path.parent, plugins=plugins, pm=pm)


def grader_set_from_config(
    cfg: Any,
    *,
    file: str | None = None,
    base_dir: str | Path | None = None,
    plugins: Sequence[str] = (),
    pm: pluggy.PluginManager | None = None,
    key_prefix: str = "",
) -> GraderSet:
    """Build a set from a parsed config (the ``graders:`` mapping of a run config or a file).

    Args:
        cfg: a mapping with ``graders:``, a bare list of entries, or one OpenAI grader object.
        file: the file it came from, named in errors.
        base_dir: the folder plugin file paths in ``cfg["plugins"]`` are relative to.
        plugins: more plugin files or modules to load.
        pm: a plugin manager to use instead of the cached one for these plugins.
        key_prefix: the key path of ``cfg`` inside a larger config (e.g. ``"graders."``).

    Raises:
        ConfigError: an unknown key, grader name or parameter (naming file and key).
        PluginError: a plugin fails to load.

    >>> gs = grader_set_from_config({"graders": [{"name": "exact_match", "weight": 2}]})
    >>> gs.ids, gs.weights
    (['exact_match'], [2.0])
    """
    if isinstance(cfg, list):
        cfg = {"graders": cfg}
    if not isinstance(cfg, Mapping):
        raise ConfigError("expected a mapping with a `graders:` list", file=file, key=key_prefix or None)
    if "type" in cfg and "graders" not in cfg or (cfg.get("type") == "multi"):
        cfg = {"graders": [dict(cfg)]}  # one OpenAI grader object, as is
    unknown = [k for k in cfg if k not in _SET_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}; {did_you_mean(unknown[0], ['graders', 'formula', 'plugins'])}",
            file=file,
            key=f"{key_prefix}{unknown[0]}",
        )
    items = cfg.get("graders")
    if not isinstance(items, list) or not items:
        raise ConfigError("`graders` must be a non-empty list", file=file, key=f"{key_prefix}graders")
    plugin_refs = list(plugins) + resolve_plugin_paths(cfg.get("plugins") or [], base_dir)
    if pm is None:
        pm = get_plugin_manager(plugin_refs)
    registry = get_registry(pm)
    entries = [build_entry(item, registry, file=file, key=f"{key_prefix}graders[{i}]") for i, item in enumerate(items)]
    formula = cfg.get("formula") or cfg.get("calculate_output")
    spec: dict[str, Any] = {"graders": items, "plugins": plugin_refs}
    if formula:
        spec["formula"] = formula
    try:
        return GraderSet(entries, formula, spec=spec)
    except ConfigError as err:
        raise ConfigError(str(err), file=file, key=f"{key_prefix}{err.key or 'graders'}") from err


def grader_set_from_spec(spec: Mapping[str, Any] | None) -> GraderSet:
    """Rebuild a set in another process from its :attr:`GraderSet.spec` (plugins are loaded there).

    Raises:
        ConfigError: ``spec`` is None (the set was built from graders, not from a config).
    """
    if spec is None:
        raise ConfigError(
            "this grader set has no spec to rebuild it from: build it with grader_set_from_config or "
            "grader_set_from_file, or pass GraderSet(..., spec=...)"
        )
    return grader_set_from_config(dict(spec), plugins=())
