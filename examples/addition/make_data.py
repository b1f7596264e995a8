"""Generate the addition example's data: two-digit addition as chat JSONL (deterministic).

Every row is an OpenAI/Fireworks-style chat: the final assistant turn is the reference for
SFT (rftkit strips it from the prompt), and ``answer`` is the column the graders read::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "What is 27 + 82?"},
                  {"role": "assistant", "content": "109"}],
     "answer": "109"}

The held-out eval pairs never appear in the training file (neither as ``a + b`` nor as
``b + a``). Run from anywhere; the output is byte-identical for the same arguments::

    python examples/addition/make_data.py            # writes train.jsonl and eval.jsonl here
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "You are a calculator. Reply with the sum only, as digits."
QUESTION = "What is {a} + {b}?"


def make_rows(pairs: list[tuple[int, int]]) -> list[dict]:
    """Chat rows for ``(a, b)`` pairs, with the sum as the reference ``answer``.

    >>> make_rows([(12, 7)])[0]["answer"]
    '19'
    """
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION.format(a=a, b=b)},
                {"role": "assistant", "content": str(a + b)},
            ],
            "answer": str(a + b),
        }
        for a, b in pairs
    ]


def split_pairs(n_train: int, n_eval: int, seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Draw disjoint train and eval pairs of two-digit numbers (10..99), seeded.

    >>> train, held_out = split_pairs(50, 10, seed=0)
    >>> len(train), len(held_out), bool({tuple(sorted(p)) for p in train} & {tuple(sorted(p)) for p in held_out})
    (50, 10, False)
    """
    rng = random.Random(seed)
    unordered = sorted({(a, b) for a in range(10, 100) for b in range(a, 100)})
    rng.shuffle(unordered)
    if n_train + n_eval > len(unordered):
        raise SystemExit(f"at most {len(unordered)} distinct pairs; asked for {n_train + n_eval}")
    picked = [(a, b) if rng.random() < 0.5 else (b, a) for a, b in unordered[: n_train + n_eval]]
    return picked[n_eval:], picked[:n_eval]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    parser.add_argument("--train", type=int, default=1000, help="number of training rows")
    parser.add_argument("--eval", type=int, default=100, help="number of held-out eval rows")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()
    train, held_out = split_pairs(args.train, args.eval, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", make_rows(train))
    write_jsonl(args.out / "eval.jsonl", make_rows(held_out))
    print(f"wrote {len(train)} train and {len(held_out)} eval rows to {args.out}")


if __name__ == "__main__":
    main()
