"""Plugins: the hook specifications, one cached plugin manager, the grader registry, loading.

Import the public names from here (``from rft.plugins import get_plugin_manager``):

- :mod:`rft.plugins.hookspecs`: every ``rft_*`` hook, and :data:`hookimpl` to implement one
- :mod:`rft.plugins.manager`: the plugin manager (cached per process) and the grader registry
- :mod:`rft.plugins.environments`: the environment registry (agentic RFT)
- :mod:`rft.plugins.loading`: grader sets from configs, files and specs, through the registry
"""

from __future__ import annotations

from rft.plugins.environments import EnvironmentRegistry, get_environments
from rft.plugins.hookspecs import hookimpl
from rft.plugins.loading import grader_set_from_config, grader_set_from_file, grader_set_from_spec
from rft.plugins.manager import (
    DEFAULT_PLUGINS,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    GraderRegistry,
    RegisteredGrader,
    clear_plugin_cache,
    get_plugin_manager,
    get_registry,
    list_plugins,
    resolve_plugin_paths,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "EnvironmentRegistry",
    "GraderRegistry",
    "RegisteredGrader",
    "clear_plugin_cache",
    "get_environments",
    "get_plugin_manager",
    "get_registry",
    "grader_set_from_config",
    "grader_set_from_file",
    "grader_set_from_spec",
    "hookimpl",
    "list_plugins",
    "resolve_plugin_paths",
]
