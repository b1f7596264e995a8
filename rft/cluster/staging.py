"""Staging a run for a Ray job: the config and every local file it names, in one directory.

``rft submit`` sends a working directory with the job (Ray's ``runtime_env.working_dir``).
:func:`stage_run` fills it from a config that :func:`rft.config.load_config` has already
validated:

- the config itself, at the top (the job runs ``rft train <name>`` there);
- every file or directory a string in the config names, resolved as ``rft train`` resolves
  it (against the config's folder), wherever it lies: data, eval data, the grader-set file,
  plugin files, a local model directory …; grader-set files (any YAML/JSON file found this
  way) are read for the files *they* name, relative to their own folder;
- the ``--plugin`` files.

Files under the config's folder keep their layout, so their paths in the config stay as
written; a file outside it (``../examples/tiny/train.jsonl``) goes to
``_outside/<n>-<folder>/`` and the path naming it is rewritten in the staged copy of the
config (or grader-set file). Only the string is replaced, so comments and line numbers in
the staged copy match the original and errors on the cluster point at the same lines.

Absolute paths are left as they are: they name storage every node reads (a shared
filesystem), which is also where data and models larger than :data:`MAX_STAGED_BYTES` belong.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.config import RunConfig
from rft.core.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["MAX_STAGED_BYTES", "OUTSIDE_DIR", "StagedRun", "stage_run"]

#: Staged working directories larger than this are refused (Ray's own upload limit is 500 MiB).
MAX_STAGED_BYTES = 100 * 1024 * 1024

#: Where files from outside the config's folder go inside the staged directory.
OUTSIDE_DIR = "_outside"

#: YAML/JSON files up to this size are read for the files they name (grader-set files are small).
_MAX_DOC_BYTES = 1024 * 1024

#: Keys of the run config whose values are outputs, never inputs to send along.
_OUTPUT_KEYS = {("output_dir",), ("scaling", "storage_path")}

_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class StagedRun:
    """A staged working directory.

    Attributes:
        root: the directory (the job's working directory on the cluster).
        config: the staged config's path relative to ``root``.
        plugins: the staged ``--plugin`` files, relative to ``root``, in the order given.
        files: every staged source (absolute) → its path relative to ``root``.
        size: bytes staged.
    """

    root: Path
    config: str
    plugins: list[str] = field(default_factory=list)
    files: dict[Path, str] = field(default_factory=dict)
    size: int = 0


@dataclass
class _Ref:
    """A string in a YAML document that names a local file."""

    start: int  # character offsets of the scalar (quotes included) in the document's text
    end: int
    prefix: str  # "tiny:" for `tiny:DIR` model references, else ""
    written: str  # the path as written
    path: Path  # absolute, normalised without following symlinks


def _abs(path: str | Path) -> Path:
    """An absolute, normalised path; symlinks are not followed (a linked folder stays "inside")."""
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(path))))


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _scalars(node: Any, keys: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every string value (not key) of a composed YAML document, with its key path."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield from _scalars(v, (*keys, getattr(k, "value", None)))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            yield from _scalars(v, (*keys, i))
    elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
        yield keys, node


def _local_ref(value: str, doc_dir: Path, root: Path) -> tuple[str, str, Path] | None:
    """``(prefix, written, path)`` when ``value`` names an existing local file relative to ``doc_dir``."""
    if not value or "\n" in value or len(value) > 512 or "://" in value:
        return None
    prefix, ref = ("tiny:", value[5:]) if value.startswith("tiny:") else ("", value)
    if not ref or os.path.isabs(ref) or ref.startswith("~"):
        return None  # absolute: storage every node reads; sent as it is
    try:
        path = _abs(doc_dir / ref)
        exists = path.exists()
    except (OSError, ValueError):
        return None
    if not exists or _under(doc_dir, path) or _under(root, path):
        return None  # nothing there, or a folder holding the config itself (".", "..")
    return prefix, ref, path


def _refs(text: str, doc_dir: Path, root: Path, *, skip: set[tuple[Any, ...]]) -> list[_Ref] | None:
    """The local files a YAML/JSON document names; None when the text is not YAML."""
    import yaml

    try:
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    out: list[_Ref] = []
    for keys, node in _scalars(doc):
        if keys in skip:
            continue
        found = _local_ref(str(node.value), doc_dir, root)
        if found:
            prefix, written, path = found
            out.append(_Ref(node.start_mark.index, node.end_mark.index, prefix, written, path))
    return out


class _Layout:
    """Where each source goes: its place under the config's folder, else a folder in ``_outside/``."""

    def __init__(self, root: Path):
        self.root = root
        self.targets: dict[Path, str] = {}
        self._folders: dict[Path, str] = {}

    def target(self, src: Path) -> str:
        if src not in self.targets:
            if _under(src, self.root):
                self.targets[src] = src.relative_to(self.root).as_posix()
            else:
                parent = src.parent
                if parent not in self._folders:
                    self._folders[parent] = f"{OUTSIDE_DIR}/{len(self._folders) + 1}-{parent.name or 'root'}"
                self.targets[src] = f"{self._folders[parent]}/{src.name}"
        return self.targets[src]


def _rewrite(text: str, refs: list[_Ref], doc_target: str, layout: _Layout) -> str:
    """``text`` with each reference replaced by the path of its staged copy, seen from ``doc_target``."""
    doc_dir = posixpath.dirname(doc_target) or "."
    for ref in sorted(refs, key=lambda r: r.start, reverse=True):
        new = posixpath.relpath(layout.target(ref.path), doc_dir)
        if posixpath.normpath(new) == posixpath.normpath(Path(ref.written).as_posix()):
            continue
        text = text[: ref.start] + json.dumps(ref.prefix + new, ensure_ascii=False) + text[ref.end :]
    return text


def _check_inputs(cfg: RunConfig) -> None:
    """The config's own input files must exist here (absolute paths may live on the cluster only)."""
    raw_data = cfg.raw.get("data") or {}
    inputs: list[tuple[str, Any, Path | None]] = [
        ("data.train", raw_data.get("train"), cfg.data.train),
        ("data.eval", raw_data.get("eval"), cfg.data.eval),
    ]
    if isinstance(cfg.graders, str):
        inputs.append(("graders", cfg.graders, cfg.resolve_path(cfg.graders)))
    for key, written, path in inputs:
        if written is None or path is None or os.path.isabs(os.path.expanduser(str(written))):
            continue
        if not path.exists():
            raise ConfigError(
                f"{written!r} does not exist (looked for {_abs(path)}); relative paths resolve against the "
                "config's folder — fix the path, or name a file on storage every node reads by absolute path",
                file=cfg.source,
                key=key,
            )


def stage_run(
    cfg: RunConfig,
    dest: str | Path,
    *,
    plugin_files: Iterable[str | Path] = (),
    max_bytes: int = MAX_STAGED_BYTES,
) -> StagedRun:
    """Copy a validated run config, every local file it names and ``plugin_files`` into ``dest``.

    Args:
        cfg: the config, as :func:`rft.config.load_config` returned it (``cfg.source`` is read again
            so that the staged copy keeps its comments and line numbers).
        dest: the directory to fill (created).
        plugin_files: ``--plugin`` files, relative to the working directory.
        max_bytes: refuse to stage more than this.

    Returns:
        what was staged, with the staged config's name and the ``--plugin`` paths to pass on.

    Raises:
        ConfigError: an input file is missing, or the files exceed ``max_bytes`` (put large data
            and models on storage every node reads, and name them by absolute path).
    """
    if cfg.source is None:
        raise ConfigError("only a config read from a file can be staged for a job; write it to a YAML file first")
    config = _abs(cfg.source)
    root = config.parent
    dest = Path(dest)
    _check_inputs(cfg)
    data_files = {_abs(p) for p in (cfg.data.train, cfg.data.eval) if p is not None}
    layout = _Layout(root)
    texts: dict[Path, tuple[str, list[_Ref]]] = {}
    todo = [config]
    while todo:  # the config, then every YAML/JSON file it names (grader-set files), depth first
        doc = todo.pop()
        if doc in texts:
            continue
        try:
            text = doc.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not a text document: staged as a plain file
        refs = _refs(text, doc.parent, root, skip=_OUTPUT_KEYS if doc == config else set())
        if refs is None:
            continue
        texts[doc] = (text, refs)
        for ref in refs:
            layout.target(ref.path)
            is_doc = ref.path.suffix in {".yaml", ".yml", ".json"} and ref.path.is_file()
            if is_doc and ref.path not in data_files and ref.path.stat().st_size <= _MAX_DOC_BYTES:
                todo.append(ref.path)
    staged = StagedRun(root=dest, config=layout.target(config))
    for pf in plugin_files:
        p = _abs(pf)
        if not p.is_file():
            raise ConfigError(f"plugin file not found: {pf}", key="--plugin")
        staged.plugins.append(layout.target(p))
    dest.mkdir(parents=True, exist_ok=True)
    for src, rel in layout.targets.items():
        staged.size += _size(src)
        if staged.size > max_bytes:
            raise ConfigError(
                f"the files to send with the job exceed {max_bytes // 2**20} MiB at {src}; put large data and "
                "models on storage every node reads and name them by absolute path in the config",
                file=cfg.source,
            )
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src in texts:
            text, refs = texts[src]
            target.write_text(_rewrite(text, refs, rel, layout), encoding="utf-8")
        elif src.is_dir():
            shutil.copytree(
                src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git")
            )
        else:
            shutil.copy2(src, target)
    staged.files = dict(layout.targets)
    outside = sum(1 for rel in staged.files.values() if rel.startswith(OUTSIDE_DIR + "/"))
    logger.info(
        "staged %d file(s) (%d from outside %s), %.1f KiB, for the job in %s",
        len(staged.files),
        outside,
        root,
        staged.size / 1024,
        dest,
    )
    return staged
