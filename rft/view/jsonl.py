"""A byte-offset index of a JSON Lines file that follows the file as it grows.

``rft train`` appends to ``rollouts.jsonl`` and ``metrics.jsonl`` while it runs, and on
``--resume`` rewrites them shorter. :class:`LineIndex` remembers where each complete line
starts; :meth:`LineIndex.refresh` reads only the bytes appended since the last call, and
starts over when the file was replaced or truncated (its ``generation`` then changes, so a
client knows to reload). A line still being written (no newline yet) is not indexed until
it is complete. The file is only ever opened for reading.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["LineIndex", "NewLine"]

#: Bytes read per chunk while indexing.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class NewLine:
    """A line found by :meth:`LineIndex.refresh`: its number, its record (or None) and its problem."""

    number: int
    record: dict[str, Any] | None
    problem: str | None = None


class LineIndex:
    """Where each complete line of a JSONL file starts, read incrementally.

    Args:
        path: the file (it may not exist yet: then the index is empty).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offsets: list[int] = []  # start of line i
        self.end = 0  # first byte not yet indexed (the start of a partial line, if any)
        self.generation = 0  # bumped whenever the file is replaced or truncated
        self._ident: tuple[int, int] | None = None  # (device, inode)
        self._empty: list[bool] = []  # blank lines are indexed (numbers stay stable) but hold no record

    def __len__(self) -> int:
        return len(self.offsets)

    def _reset(self) -> None:
        self.offsets = []
        self._empty = []
        self.end = 0
        self.generation += 1

    def refresh(self) -> list[NewLine]:
        """Index the lines appended since the last call and return them, parsed.

        Returns:
            The new lines in order; a line that is not a JSON object comes back with
            ``record=None`` and a ``problem`` naming the file and line (it is skipped by
            readers, never turned into a score).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.offsets or self.end:
                self._reset()
            self._ident = None
            return []
        ident = (st.st_dev, st.st_ino)
        if self._ident is not None and (ident != self._ident or st.st_size < self.end):
            logger.info("%s was replaced or truncated; indexing it again", self.path)
            self._reset()
        self._ident = ident
        if st.st_size == self.end:
            return []
        found: list[NewLine] = []
        with self.path.open("rb") as f:
            f.seek(self.end)
            pending = b""
            start = self.end
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                pending += chunk
                while True:
                    nl = pending.find(b"\n")
                    if nl < 0:
                        break
                    raw, pending = pending[:nl], pending[nl + 1 :]
                    found.append(self._add(start, raw))
                    start += nl + 1
            self.end = start  # a trailing partial line is read again next time
        return found

    def _add(self, start: int, raw: bytes) -> NewLine:
        number = len(self.offsets)
        self.offsets.append(start)
        blank = not raw.strip()
        self._empty.append(blank)
        if blank:
            return NewLine(number, None, None)
        record, problem = _parse(raw, self.path, number)
        return NewLine(number, record, problem)

    def read(self, number: int) -> dict[str, Any] | None:
        """The record on line ``number`` (0-based), or None for a blank or broken line.

        Raises:
            IndexError: ``number`` is not an indexed line.
        """
        if not 0 <= number < len(self.offsets):
            raise IndexError(f"{self.path} has no indexed line {number} (it has {len(self.offsets)})")
        if self._empty[number]:
            return None
        with self.path.open("rb") as f:
            f.seek(self.offsets[number])
            raw = f.readline()
        return _parse(raw, self.path, number)[0]

    def read_many(self, numbers: list[int]) -> dict[int, dict[str, Any] | None]:
        """Several records with one open file: ``{line number: record}``."""
        out: dict[int, dict[str, Any] | None] = {}
        with self.path.open("rb") as f:
            for n in sorted(set(numbers)):
                if not 0 <= n < len(self.offsets) or self._empty[n]:
                    out[n] = None
                    continue
                f.seek(self.offsets[n])
                out[n] = _parse(f.readline(), self.path, n)[0]
        return out

    def line_of(self, byte: int) -> int:
        """The number of the line that holds byte offset ``byte``."""
        import bisect

        return max(0, bisect.bisect_right(self.offsets, byte) - 1)


def _parse(raw: bytes, path: Path, number: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"{path}:{number + 1}: not valid JSON ({err}); the line is skipped"
    if not isinstance(value, dict):
        return None, f"{path}:{number + 1}: expected a JSON object, got {type(value).__name__}; the line is skipped"
    return value, None
