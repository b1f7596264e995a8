"""The environment registry: names → :class:`rft.Environment`, each attributed to its plugin.

Environments come from the ``rft_register_environments`` hook, and from plugin modules
without it: every public module-level :class:`rft.Environment` defined in the module
(``@rft.environment`` on a setup function) is registered under its name, as module-level
``@rft.grader`` functions are. A run names one with ``environment: NAME``.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pluggy

from rft.core.environment import Environment
from rft.core.errors import PluginError, did_you_mean
from rft.plugins.manager import DISABLE_ENV, collect_registrations

__all__ = ["EnvironmentRegistry", "RegisteredEnvironment", "get_environments", "module_environments"]

_LOCK = threading.RLock()
_CACHE: weakref.WeakKeyDictionary[pluggy.PluginManager, EnvironmentRegistry] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RegisteredEnvironment:
    name: str
    env: Environment
    plugin: str


class EnvironmentRegistry:
    """The registered environments by name."""

    def __init__(self) -> None:
        self._envs: dict[str, RegisteredEnvironment] = {}

    def register(self, env: object, name: str | None = None, *, plugin: str = "?") -> None:
        """Add ``env`` under ``name`` (default: its own name).

        Raises:
            PluginError: ``env`` is not an :class:`rft.Environment`, or another plugin
                registered the same name (the message names both).
        """
        if not isinstance(env, Environment):
            raise PluginError(
                f"plugin {plugin!r} registered {env!r} as an environment; register an rft.Environment "
                "(e.g. a setup function decorated with @rft.environment(tools=[...]))"
            )
        key = name or env.name
        if key in self._envs:
            other = self._envs[key].plugin
            if self._envs[key].env is env:
                return
            raise PluginError(
                f"environment name clash: {key!r} is registered by plugin {other!r} and by plugin {plugin!r}; "
                f"block one with {DISABLE_ENV}={plugin} or rename it"
            )
        self._envs[key] = RegisteredEnvironment(key, env, plugin)

    def get(self, name: str) -> Environment:
        """The environment named ``name``.

        Raises:
            PluginError: none is registered under it (close names are suggested).
        """
        found = self._envs.get(name)
        if found is None:
            raise PluginError(
                f"unknown environment {name!r} ({did_you_mean(name, list(self._envs)) if self._envs else 'none is registered'}). "
                "Define it with @rft.environment in a plugin file the graders config lists under `plugins:`"
            )
        return found.env

    def __contains__(self, name: object) -> bool:
        return name in self._envs

    def __iter__(self) -> Iterator[RegisteredEnvironment]:
        return iter(sorted(self._envs.values(), key=lambda r: r.name))

    def names(self) -> list[str]:
        return sorted(self._envs)


def module_environments(module: ModuleType) -> list[Environment]:
    """The public module-level environments defined in ``module`` (or its submodules)."""
    prefix = module.__name__
    out: list[Environment] = []
    for attr, obj in list(vars(module).items()):
        if attr.startswith("_") or not isinstance(obj, Environment):
            continue
        home = str(obj.meta.get("module") or prefix)
        if (home == prefix or home.startswith(prefix + ".")) and all(obj is not o for o in out):
            out.append(obj)
    return out


def get_environments(pm: pluggy.PluginManager) -> EnvironmentRegistry:
    """Every environment the plugins of ``pm`` register (cached per manager).

    Raises:
        PluginError: a plugin's hook raised, or registered something that is not an
            environment, or two plugins registered the same name.
    """
    with _LOCK:
        cached = _CACHE.get(pm)
        if cached is not None:
            return cached
        registry = EnvironmentRegistry()
        calls, hooked = collect_registrations(pm, "rft_register_environments")
        plugins = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
        order = {name: i for i, (name, _) in enumerate(plugins)}
        for name, plugin_obj in plugins:
            if name not in hooked and inspect.ismodule(plugin_obj):
                calls.extend((name, env, None) for env in module_environments(plugin_obj))
        for plugin_name, env, ename in sorted(calls, key=lambda c: order.get(c[0], len(order))):
            registry.register(env, ename, plugin=plugin_name)
        _CACHE[pm] = registry
        return registry
