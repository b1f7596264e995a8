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
from rft.plugins.manager import DISABLE_ENV, _codes, _plugin_in_traceback, _plugin_on_stack

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
        hook = pm.hook.rft_register_environments
        impls = hook.get_hookimpls()
        hooked = {impl.plugin_name for impl in impls}
        # by identity, as the grader registry does: each register() call is attributed to the
        # plugin whose implementation is on the call stack
        owners = {id(code): impl.plugin_name for impl in impls for code in _codes(impl.function)}

        def register(env: object, name: str | None = None) -> None:
            here = inspect.currentframe()
            plugin = _plugin_on_stack(here.f_back if here is not None else None, owners)
            registry.register(env, name, plugin=plugin or "<unknown plugin>")

        try:
            hook(register=register)
        except PluginError:
            raise
        except Exception as err:
            culprit = _plugin_in_traceback(err.__traceback__, owners) or "<unknown plugin>"
            raise PluginError(
                f"plugin {culprit!r} failed in rft_register_environments: {type(err).__name__}: {err}"
            ) from err
        for name, plugin_obj in pm.list_name_plugin():
            if plugin_obj is None or name in hooked or not inspect.ismodule(plugin_obj):
                continue
            for env in module_environments(plugin_obj):
                registry.register(env, plugin=name)
        _CACHE[pm] = registry
        return registry
