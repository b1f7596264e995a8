"""Plugin discovery: built-ins, entry points (group ``rft``), files and modules from configs.

Built-in graders are ordinary plugins listed in :data:`DEFAULT_PLUGINS`. Third-party
packages declare ``[project.entry-points.rft]``. A plugin file or module can be named
in a grader-set/run config (``plugins:``) or with ``--plugin``. Set
``RFT_DISABLE_PLUGINS=name1,name2`` to block plugins by name.

A plugin module needs no hook to contribute graders: unless it implements
``rft_register_graders`` (which then decides alone), every public module-level
``@rft.grader`` function or class defined in it (or in its submodules) is registered, and
any public function of it named in a grader set — e.g. ``accuracy_reward`` of the plain
module ``trl.rewards`` — is looked up there when no plugin registered that name.

One plugin manager per process: :func:`get_plugin_manager` caches managers by the
plugins asked for, its flags and the blocked names, so the plugins of a config are
imported and their hooks checked once; :func:`clear_plugin_cache` forgets them (tests
that change what is installed call it). pluggy is used through its public API only.
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
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, ModuleType, TracebackType
from typing import Any

import pluggy

from rft.core import Grader, as_grader
from rft.core.errors import PluginError, UnknownGraderError, did_you_mean
from rft.core.text import snake_case
from rft.core.version import __version__
from rft.plugins import hookspecs

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "GraderRegistry",
    "RegisteredGrader",
    "clear_plugin_cache",
    "get_plugin_manager",
    "get_registry",
    "list_plugins",
    "module_graders",
    "resolve_plugin_paths",
]

ENTRY_POINT_GROUP = "rft"
DISABLE_ENV = "RFT_DISABLE_PLUGINS"

#: Modules of built-in graders, registered like any plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "graders.strings",
    "graders.similarity",
    "graders.structured",
    "graders.tool_calls",
    "graders.task_success",
    "graders.mathematics",
    "graders.format",
    "graders.openai",
    "graders.judges",
    "graders.relative",
    "graders.remote",
    "graders.code",
)

#: What ``--plugin`` and a config's ``plugins:`` accept, for error messages.
_ACCEPTED = "a plugin is a path to a Python file (*.py) or an importable module name (e.g. my_package.graders)"


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
        """True for a grader class, whose parameters come from the grader-set file."""
        return isinstance(self.obj, type)

    def make(self, params: dict[str, Any] | None = None) -> Grader:
        """A :class:`rft.Grader` for this entry, with ``params`` from a grader-set file."""
        return as_grader(self.obj, name=self.name, plugin=self.plugin, params=params or {})

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``rft graders --json`` shows it."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "inputs": list(self.inputs),
            "params": self.params,
            "kind": "factory" if self.is_factory else "function",
        }


class GraderRegistry:
    """Names → graders, recording which plugin contributed each.

    Besides registered graders, the registry looks names up in plugin modules without an
    ``rft_register_graders`` hook (:meth:`add_module`): a public function of such a module
    (e.g. ``trl.rewards.accuracy_reward``) is found by its name.
    """

    def __init__(self) -> None:
        self._graders: dict[str, RegisteredGrader] = {}
        self._modules: list[tuple[str, ModuleType]] = []
        self._found: dict[str, RegisteredGrader] = {}

    def register(self, obj: Any, name: str | None = None, *, plugin: str = "?") -> None:
        """Add a grader, a grader class or a TRL-style reward function under ``name``.

        Raises:
            PluginError: ``obj`` is not callable, the name is not an identifier, or another
                plugin registered the same name (the message names both plugins).
        """
        entry = _entry(obj, name, plugin)
        if entry.name in self._graders:
            other = self._graders[entry.name].plugin
            raise PluginError(
                f"grader name clash: {entry.name!r} is registered by plugin {other!r} and by plugin {plugin!r}; "
                f"block one with {DISABLE_ENV}={plugin} or rename it"
            )
        self._graders[entry.name] = entry

    def add_module(self, plugin: str, module: ModuleType) -> None:
        """Look names that no plugin registered up in ``module`` too (a plugin without the hook)."""
        self._modules.append((plugin, module))

    def get(self, name: str) -> RegisteredGrader:
        """The entry named ``name``; raises :class:`UnknownGraderError` suggesting close names.

        Raises:
            UnknownGraderError: no plugin registered the name and no plugin module has it.
            PluginError: several plugin modules have a different function of that name.
        """
        entry = self._graders.get(name) or self._from_modules(name)
        if entry is None:
            raise UnknownGraderError(name, [*self._graders, *self._module_names()])
        return entry

    def _from_modules(self, name: str, *, strict: bool = True) -> RegisteredGrader | None:
        if name in self._found:
            return self._found[name]
        if name.startswith("_") or not name.isidentifier():
            return None
        hits: list[tuple[str, Any]] = []
        for plugin, module in self._modules:
            try:
                obj = getattr(module, name, None)
            except Exception as err:  # a lazy module importing the attribute's submodule
                if not strict:
                    continue
                raise PluginError(
                    f"plugin {plugin!r}: looking up {name!r} failed: {type(err).__name__}: {err}"
                ) from err
            if obj is not None and callable(obj) and not isinstance(obj, ModuleType):
                if all(obj is not other for _, other in hits):
                    hits.append((plugin, obj))
        if not hits:
            return None
        if len(hits) > 1:
            if not strict:
                return None
            plugins = " and ".join(repr(p) for p, _ in hits)
            raise PluginError(
                f"grader {name!r} is ambiguous: plugin modules {plugins} each have a function of that name; "
                f"load only one of them, or register one under another name with rft_register_graders"
            )
        plugin, obj = hits[0]
        entry = self._found[name] = _entry(obj, name, plugin)
        return entry

    def _module_names(self) -> list[str]:
        names: list[str] = []
        for _, module in self._modules:
            exported = getattr(module, "__all__", None)
            pool = exported if isinstance(exported, (list, tuple)) else list(vars(module))
            names.extend(
                str(n)
                for n in pool
                if not str(n).startswith("_") and f"{module.__name__}.{n}" not in sys.modules  # not a submodule
            )
        return names

    def module_entries(self) -> list[RegisteredGrader]:
        """The functions that plugin modules without the hook export (``__all__``), for listings."""
        out = []
        for _, module in self._modules:
            exported = getattr(module, "__all__", None)
            for name in exported if isinstance(exported, (list, tuple)) else ():
                if name in self._graders:
                    continue
                entry = self._from_modules(str(name), strict=False)
                if entry is not None:
                    out.append(entry)
        return sorted(out, key=lambda r: r.name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._graders or self._from_modules(name, strict=False) is not None

    def __iter__(self) -> Iterator[RegisteredGrader]:
        return iter(sorted(self._graders.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._graders)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._graders)


def _entry(obj: Any, name: str | None, plugin: str) -> RegisteredGrader:
    """A registry entry for ``obj`` (see :meth:`GraderRegistry.register`)."""
    if isinstance(obj, Grader):
        gname, desc, inputs, params = name or obj.name, obj.description, obj.inputs, obj.defaults
    elif isinstance(obj, type):
        meta = getattr(obj, "__rft_grader__", {})
        gname = name or meta.get("name") or snake_case(obj.__name__)
        desc = meta.get("description") or (inspect.getdoc(obj) or "").split("\n")[0]
        sig = inspect.signature(obj.__call__)
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
    return RegisteredGrader(gname, obj, plugin, desc or "", tuple(inputs), params)


def module_graders(module: ModuleType) -> list[Any]:
    """The public module-level ``@rft.grader`` functions and classes defined in ``module``
    (or its submodules, for a package re-exporting them), in definition order.

    Graders imported from elsewhere (e.g. a built-in one) are left out: they belong to the
    plugin that defines them.
    """
    prefix = module.__name__
    out: list[Any] = []
    for attr, obj in list(vars(module).items()):
        if attr.startswith("_"):
            continue
        if isinstance(obj, Grader):
            home = getattr(obj.fn, "__module__", None) or ""
        elif isinstance(obj, type) and "__rft_grader__" in vars(obj):
            home = obj.__module__
        else:
            continue
        if (home == prefix or home.startswith(prefix + ".")) and all(obj is not o for o in out):
            out.append(obj)
    return out


# ---------------------------------------------------------------------------
# plugin references: files and modules
# ---------------------------------------------------------------------------


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def resolve_plugin_paths(refs: Iterable[str], base_dir: str | Path | None) -> list[str]:
    """Plugin references from a config: files relative to the config's folder, modules as they are."""
    out = []
    for ref in refs:
        ref = str(ref)
        if _looks_like_path(ref):
            p = Path(ref)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            out.append(str(p.resolve()))
        else:
            out.append(ref)
    return out


def _load_plugin_file(ref: str) -> tuple[str, ModuleType]:
    path = Path(ref).resolve()
    if not path.is_file():
        raise PluginError(f"plugin file not found: {ref} ({_ACCEPTED})")
    if path.suffix != ".py":
        raise PluginError(f"plugin {ref!r} is not a Python file; {_ACCEPTED}")
    modname = f"rft_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if modname in sys.modules:
        return str(path), sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a *.py file always has a source loader
        raise PluginError(f"plugin file {ref} cannot be imported; {_ACCEPTED}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[modname]
        raise PluginError(f"plugin file {ref} failed to import: {type(err).__name__}: {err}") from err
    return str(path), module


def _load_plugin_module(ref: str) -> tuple[str, ModuleType]:
    if not all(part.isidentifier() for part in ref.split(".")):
        raise PluginError(f"plugin {ref!r} is neither a Python file (*.py) nor a module name; {_ACCEPTED}")
    try:
        return ref, importlib.import_module(ref)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if ref == missing or ref.startswith(missing + "."):  # the module itself is missing, not one it imports
            found = f"a file named {ref!r} exists but is not a .py file" if Path(ref).exists() else str(err)
            raise PluginError(
                f"plugin {ref!r} is neither a Python file (*.py) nor an importable module ({found}); {_ACCEPTED}"
            ) from err
        raise PluginError(f"plugin module {ref!r} failed to import: {type(err).__name__}: {err}") from err
    except Exception as err:
        raise PluginError(f"plugin module {ref!r} failed to import: {type(err).__name__}: {err}") from err


def _load_plugin_ref(ref: str) -> tuple[str, ModuleType]:
    """Import a plugin reference: ``(name to register it under, module)``."""
    if _looks_like_path(ref):
        return _load_plugin_file(ref)
    return _load_plugin_module(ref)


def _blocked() -> frozenset[str]:
    return frozenset(p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip())


# ---------------------------------------------------------------------------
# the plugin manager (one per process and set of plugins)
# ---------------------------------------------------------------------------

_LOCK = threading.RLock()
_MANAGERS: dict[tuple[Any, ...], pluggy.PluginManager] = {}
_REGISTRIES: weakref.WeakKeyDictionary[pluggy.PluginManager, GraderRegistry] = weakref.WeakKeyDictionary()


def clear_plugin_cache() -> None:
    """Forget every cached plugin manager and registry (the next call builds them anew).

    Call it after installing or removing a plugin package in a running process; tests
    that fake entry points use the ``fresh_plugins`` fixture, which calls it.
    """
    with _LOCK:
        _MANAGERS.clear()
        _REGISTRIES.clear()


def get_plugin_manager(
    plugins: Sequence[str] = (),
    *,
    builtins: bool = True,
    entry_points: bool = True,
) -> pluggy.PluginManager:
    """The plugin manager with the built-ins, installed entry points and the given plugins.

    Repeated calls with the same plugins, flags and ``RFT_DISABLE_PLUGINS`` return the
    same manager (and :func:`get_registry` the same registry).

    Args:
        plugins: plugin files (``*.py`` paths) or importable module names.
        builtins: register :data:`DEFAULT_PLUGINS`.
        entry_points: load installed packages' ``rft`` entry points.

    Raises:
        PluginError: a plugin reference is neither a ``.py`` file nor a module, a plugin
            fails to import, or it implements a hook that does not exist.
    """
    refs = tuple(str(Path(r).resolve()) if _looks_like_path(str(r)) else str(r) for r in plugins)
    key = (refs, builtins, entry_points, _blocked())
    with _LOCK:
        pm = _MANAGERS.get(key)
        if pm is None:
            pm = _build_plugin_manager(refs, builtins=builtins, entry_points=entry_points, blocked=key[3])
            _MANAGERS[key] = pm
        return pm


def _build_plugin_manager(
    refs: Sequence[str], *, builtins: bool, entry_points: bool, blocked: Iterable[str]
) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    if builtins:
        for modname in DEFAULT_PLUGINS:
            if not pm.is_blocked(modname):
                pm.register(importlib.import_module(modname), name=modname)
    if entry_points:
        _load_entry_points(pm)
    for ref in refs:
        name, module = _load_plugin_ref(ref)
        if pm.is_blocked(name) or pm.has_plugin(name) or pm.is_registered(module):
            continue
        pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        hooks = [n for n in dir(hookspecs) if n.startswith("rft_")]
        pname = pm.get_name(err.plugin) or "?"
        hookname = str(err).split("unknown hook ")[-1].split(" ")[0].strip("'\"")
        raise PluginError(
            f"plugin {pname!r} implements unknown hook {hookname!r}: {did_you_mean(hookname, hooks)}"
        ) from err
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Load the ``rft`` entry points one name at a time, so a failure names its entry point."""
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen or pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        seen.add(ep.name)
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as err:
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            raise PluginError(
                f"plugin {ep.name!r} (entry point {ep.value!r} of {dist}) failed to load: "
                f"{type(err).__name__}: {err}; fix or uninstall {dist}, or block it with {DISABLE_ENV}={ep.name}"
            ) from err


# ---------------------------------------------------------------------------
# the grader registry
# ---------------------------------------------------------------------------


def _codes(fn: Any) -> list[CodeType]:
    """The code objects whose frames run when pluggy calls ``fn`` (itself and what it wraps)."""
    out = []
    for f in (fn, inspect.unwrap(fn)):
        code = getattr(f, "__code__", None)
        if isinstance(code, CodeType):
            out.append(code)
    return out


def _plugin_on_stack(frame: FrameType | None, owners: dict[int, str]) -> str | None:
    while frame is not None:
        owner = owners.get(id(frame.f_code))
        if owner is not None:
            return owner
        frame = frame.f_back
    return None


def _plugin_in_traceback(trace: TracebackType | None, owners: dict[int, str]) -> str | None:
    found = None
    while trace is not None:
        found = owners.get(id(trace.tb_frame.f_code), found)
        trace = trace.tb_next
    return found


def collect_registrations(
    pm: pluggy.PluginManager, hook_name: str
) -> tuple[list[tuple[str, Any, str | None]], set[str]]:
    """Call a ``register`` hook once through ``pm.hook`` and collect what each plugin registered.

    Each ``register(obj, name=None)`` call is attributed to the plugin whose hook
    implementation is on the call stack (hook wrappers see the call, as for any hook).

    Returns:
        ``[(plugin, obj, name), ...]`` in call order, and the names of the plugins that
        implement the hook.

    Raises:
        PluginError: a plugin's implementation raised (the message names the plugin).
    """
    hook = getattr(pm.hook, hook_name)
    impls = hook.get_hookimpls()  # registration order; pluggy calls them in reverse
    hooked = {impl.plugin_name for impl in impls}
    # by identity: equal code objects from two plugin files with the same source compare equal
    owners = {id(code): impl.plugin_name for impl in impls for code in _codes(impl.function)}
    calls: list[tuple[str, Any, str | None]] = []

    def register(obj: Any, name: str | None = None) -> None:
        here = inspect.currentframe()
        plugin = _plugin_on_stack(here.f_back if here is not None else None, owners)
        calls.append((plugin or "<unknown plugin>", obj, name))

    try:
        hook(register=register)
    except PluginError:
        raise
    except Exception as err:
        culprit = _plugin_in_traceback(err.__traceback__, owners) or "<unknown plugin>"
        raise PluginError(f"plugin {culprit!r} failed in {hook_name}: {type(err).__name__}: {err}") from err
    return calls, hooked


def get_registry(pm: pluggy.PluginManager) -> GraderRegistry:
    """The graders every plugin registers, each attributed to its plugin (cached per manager).

    ``rft_register_graders`` is called once through ``pm.hook``, so hook wrappers see
    the call. Each ``register(...)`` is attributed to the plugin whose implementation
    is on the call stack. A plugin module without that hook contributes its public
    module-level ``@rft.grader`` objects (:func:`module_graders`), and names no plugin
    registered are looked up in it (:meth:`GraderRegistry.add_module`). Registrations are
    applied in plugin registration order (built-ins, entry points, files): a clash names
    the earlier plugin as the owner and the later one as the one to block.

    Raises:
        PluginError: a plugin's hook raised, or registered a bad or clashing grader.
    """
    with _LOCK:
        cached = _REGISTRIES.get(pm)
        if cached is not None:
            return cached
        calls, hooked = collect_registrations(pm, "rft_register_graders")
        registry = GraderRegistry()
        plugins = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
        order = {name: i for i, (name, _) in enumerate(plugins)}
        for name, plugin in plugins:
            if name not in hooked and isinstance(plugin, ModuleType):
                calls.extend((name, obj, None) for obj in module_graders(plugin))
                registry.add_module(name, plugin)
        for plugin_name, obj, gname in sorted(calls, key=lambda c: order.get(c[0], len(order))):
            registry.register(obj, gname, plugin=plugin_name)
        _REGISTRIES[pm] = registry
        return registry


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Plugins with their version and the hooks they implement (for ``rft plugins``)."""
    dists = {id(p): d for p, d in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        version: str | None
        if dist is not None:
            version, package = dist.version, dist.project_name
        elif name in DEFAULT_PLUGINS:
            version, package = __version__, "rftkit (built-in)"
        else:
            version, package = None, "local"
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({"name": name, "package": package, "version": version, "hooks": hooks})
    return out
