"""Plugins: the hook specifications, the plugin manager and the grader registry.

Import the public names from here (``from rft.plugins import get_plugin_manager``).
"""

from __future__ import annotations

from rft.plugins.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    GraderRegistry,
    RegisteredGrader,
    get_plugin_manager,
    get_registry,
    list_plugins,
    resolve_plugin_paths,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "GraderRegistry",
    "RegisteredGrader",
    "get_plugin_manager",
    "get_registry",
    "list_plugins",
    "resolve_plugin_paths",
]
