"""``rft view``: a local, read-only web page over run directories (rollouts, curves, evals).

:func:`create_app` builds the FastAPI app; :class:`RunReader` reads one run directory
incrementally (a byte-offset index per JSONL file, :class:`LineIndex`), so a growing run is
followed and a large one is paged from the server. The page's script and style ship in
``rft/view/static`` (no CDN). Layer: rank 5 (below :mod:`rft.cli`, which serves it).
"""

from __future__ import annotations

from rft.view.jsonl import LineIndex
from rft.view.run import Filters, RunReader
from rft.view.server import create_app

__all__ = ["Filters", "LineIndex", "RunReader", "create_app"]
