"""Plugin discovery: built-ins, entry points (group ``rft``), files and modules from configs.

Built-in graders are ordinary plugins listed in :data:`DEFAULT_PLUGINS`. Third-party
packages declare ``[project.entry-points.rft]``. A plugin file or module can be named
in a grader-set/run config (``plugins:``) or with ``--plugin``. Set
``RFT_DISABLE_PLUGINS=name1,name2`` to block plugins by name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from rft.core.errors import PluginError, UnknownGraderError, did_you_mean
from rft.plugins import hookspecs

logger = logging.getLogger(__name__)

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

ENTRY_POINT_GROUP = "rft"
DISABLE_ENV = "RFT_DISABLE_PLUGINS"

#: Modules of built-in graders, registered like any plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "graders.strings",
    "graders.similarity",
    "graders.structured",
    "graders.mathematics",
    "graders.format",
    "graders.openai",
    "graders.judges",
    "graders.remote",
    "graders.code",
)


@dataclass
class RegisteredGrader:
    """A grader (or grader factory) as registered by a plugin."""

    name: str
    obj: Any
    plugin: str
    description: str = ""
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_factory(self) -> bool:
        return isinstance(self.obj, type)

    def make(self, params: dict[str, Any] | None = None) -> Any:
        """A :class:`rft.Grader` for this entry, with ``params`` from a grader-set file."""
        from rft.core import as_grader

        return as_grader(self.obj, name=self.name, plugin=self.plugin, params=params or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "inputs": list(self.inputs),
            "params": self.params,
            "kind": "factory" if self.is_factory else "function",
        }


class GraderRegistry:
    """Names → graders, recording which plugin contributed each."""

    def __init__(self) -> None:
        self._graders: dict[str, RegisteredGrader] = {}

    def register(self, obj: Any, name: str | None = None, *, plugin: str = "?") -> None:
        from rft.core.grading import Grader, _snake

        if isinstance(obj, Grader):
            gname, desc, inputs, params = name or obj.name, obj.description, obj.inputs, obj.defaults
        elif isinstance(obj, type):
            meta = getattr(obj, "__rft_grader__", {})
            gname = name or meta.get("name") or _snake(obj.__name__)
            desc = meta.get("description") or (inspect.getdoc(obj) or "").split("\n")[0]
            sig = inspect.signature(type(obj).__call__ if False else obj.__call__)
            inputs = tuple(p for p in sig.parameters if p != "self")
            params = {
                p.name: (None if p.default is p.empty else p.default)
                for p in inspect.signature(obj).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
        elif callable(obj):
            g = Grader(obj, name=name)
            gname, desc, inputs, params = g.name, g.description, g.inputs, {}
        else:
            raise PluginError(f"plugin {plugin!r} registered {obj!r}, which is not callable")
        if not isinstance(gname, str) or not gname.isidentifier():
            raise PluginError(f"plugin {plugin!r} registered a grader named {gname!r}; names must be identifiers")
        if gname in self._graders:
            other = self._graders[gname].plugin
            raise PluginError(
                f"grader name clash: {gname!r} is registered by plugin {other!r} and by plugin {plugin!r}; "
                f"block one with {DISABLE_ENV}={plugin} or rename it"
            )
        self._graders[gname] = RegisteredGrader(gname, obj, plugin, desc or "", tuple(inputs), params)

    def get(self, name: str) -> RegisteredGrader:
        try:
            return self._graders[name]
        except KeyError:
            raise UnknownGraderError(name, self._graders) from None

    def __contains__(self, name: object) -> bool:
        return name in self._graders

    def __iter__(self):
        return iter(sorted(self._graders.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._graders)

    def names(self) -> list[str]:
        return sorted(self._graders)


def resolve_plugin_paths(refs: Iterable[str], base_dir: str | Path | None) -> list[str]:
    """Plugin references from a config: files relative to the config's folder, modules as they are."""
    out = []
    for ref in refs:
        ref = str(ref)
        if ref.endswith(".py") or "/" in ref or os.sep in ref:
            p = Path(ref)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            out.append(str(p.resolve()))
        else:
            out.append(ref)
    return out


def _load_plugin_ref(ref: str) -> tuple[str, Any]:
    if ref.endswith(".py") or os.sep in ref or "/" in ref:
        path = Path(ref).resolve()
        if not path.is_file():
            raise PluginError(f"plugin file not found: {ref}")
        modname = f"rft_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if modname in sys.modules:
            return str(path), sys.modules[modname]
        spec = importlib.util.spec_from_file_location(modname, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[modname]
            raise PluginError(f"plugin file {ref} failed to import: {type(err).__name__}: {err}") from err
        return str(path), module
    try:
        return ref, importlib.import_module(ref)
    except ImportError as err:
        raise PluginError(f"plugin module {ref!r} could not be imported: {err}") from err


def _blocked() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def get_plugin_manager(
    plugins: Sequence[str] = (),
    *,
    builtins: bool = True,
    entry_points: bool = True,
) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, installed entry points and the given plugins.

    Args:
        plugins: plugin files (``*.py`` paths) or importable module names.
        builtins: register :data:`DEFAULT_PLUGINS`.
        entry_points: load installed packages' ``rft`` entry points.

    Raises:
        PluginError: a plugin fails to import, or implements a hook that does not exist.
    """
    pm = pluggy.PluginManager("rft")
    pm.add_hookspecs(hookspecs)
    for name in _blocked():
        pm.set_blocked(name)
    if builtins:
        for modname in DEFAULT_PLUGINS:
            if pm.is_blocked(modname):
                continue
            pm.register(importlib.import_module(modname), name=modname)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as err:
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r} of {ep.dist.name if ep.dist else '?'}) "
                    f"failed to load: {type(err).__name__}: {err}"
                ) from err
            pm.register(plugin, name=ep.name)
            pm._plugin_distinfo.append((plugin, pluggy._manager.DistFacade(ep.dist)))  # type: ignore[attr-defined]
    for ref in plugins:
        name, module = _load_plugin_ref(ref)
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        if pm.is_registered(module):
            continue
        pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        hooks = [n for n in dir(hookspecs) if n.startswith("rft_")]
        bad = getattr(err, "plugin", None)
        pname = pm.get_name(bad) if bad is not None else "?"
        hookname = str(err).split("unknown hook ")[-1].split(" ")[0].strip("'\"")
        raise PluginError(
            f"plugin {pname!r} implements unknown hook {hookname!r}: {did_you_mean(hookname, hooks)}"
        ) from err
    return pm


def get_registry(pm: pluggy.PluginManager) -> GraderRegistry:
    """Call every ``rft_register_graders`` implementation, attributing each grader to its plugin."""
    cached = getattr(pm, "_rft_registry", None)
    if cached is not None:
        return cached
    registry = GraderRegistry()
    # get_hookimpls() is in registration order (built-ins, entry points, files): a clash
    # then names the earlier plugin as the owner and the later one as the one to block
    for impl in pm.hook.rft_register_graders.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(obj: Any, name: str | None = None, _p: str = plugin_name) -> None:
            registry.register(obj, name, plugin=_p)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as err:
            raise PluginError(
                f"plugin {plugin_name!r} failed in rft_register_graders: {type(err).__name__}: {err}"
            ) from err
    pm._rft_registry = registry  # type: ignore[attr-defined]
    return registry


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Plugins with their version and the hooks they implement (for ``rft plugins``)."""
    dists = {id(p): d for p, d in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        if dist is not None:
            version = dist.version
            package = dist.project_name
        elif name in DEFAULT_PLUGINS:
            from rft import __version__

            version, package = __version__, "rftkit (built-in)"
        else:
            version, package = None, "local"
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({"name": name, "package": package, "version": version, "hooks": hooks})
    return out
