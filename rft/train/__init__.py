"""Training: SFT warm start and GRPO via TRL, graders as rewards, evaluation, the run pipeline.

Importing this package is light; TRL, transformers and torch load inside the functions
of its modules (``rft.train.pipeline.run_training`` is the entry point of ``rft train``).
"""

from __future__ import annotations

__all__: list[str] = []
