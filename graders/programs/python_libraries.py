"""The python grader's ``main.py`` in the sandbox: offer its libraries, then run the harness.

OpenAI's python grader runtime documents a set of libraries (numpy, scipy, pandas, …).
The sandbox starts Python with ``-I -S`` (the standard library only); this program adds
a finder at the end of ``sys.meta_path`` that imports exactly the offered top-level
modules (the documented libraries that are installed, and the packages they need) from
the read-only library directories, then runs the test harness (``harness.py``) as
``__main__``. Other packages installed beside them stay unimportable, and the standard
library always wins over a library directory.

Its configuration is ``libraries.json`` in the working directory:
``{"dirs": [...], "names": [...]}``. Standard library only; importing this module runs
nothing.
"""

from __future__ import annotations

import json
import sys
from importlib.machinery import ModuleSpec, PathFinder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

#: The configuration file, written next to this program by the grader.
CONFIG = "libraries.json"
#: The harness program, run as ``__main__`` once the finder is in place.
HARNESS = "harness.py"


class LibraryFinder:
    """Finds the offered top-level modules in the library directories, and nothing else there.

    >>> finder = LibraryFinder([], ["numpy"])
    >>> finder.find_spec("torch") is None, finder.find_spec("numpy.linalg", ["/x"]) is None
    (True, True)
    """

    def __init__(self, dirs: Sequence[str], names: Sequence[str]):
        self.dirs = list(dirs)
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: object = None) -> ModuleSpec | None:
        # submodules (path given) are found through their package's __path__ as usual
        if path is not None or name not in self.names:
            return None
        return PathFinder.find_spec(name, self.dirs)


def install(dirs: Sequence[str], names: Sequence[str]) -> LibraryFinder:
    """Add a :class:`LibraryFinder` for ``names`` in ``dirs`` after the standard finders."""
    finder = LibraryFinder(dirs, names)
    sys.meta_path.append(finder)
    return finder


def main() -> None:
    """Read ``libraries.json``, install the finder, run ``harness.py`` as ``__main__``."""
    import runpy

    with open(CONFIG, encoding="utf-8") as f:
        cfg = json.load(f)
    install(cfg["dirs"], cfg["names"])
    runpy.run_path(HARNESS, run_name="__main__")


if __name__ == "__main__":
    main()
