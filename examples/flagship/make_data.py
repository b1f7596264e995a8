"""Generate the flagship data: name an even (or odd) number in a range (deterministic).

The task has several right answers: for "Name an even number between 818 and 830." any of
820, 822, … 828 passes. A verifier checks any of them in one line; a reference output shows
only one. The training file mixes

* ``--labeled`` rows (default 32) with a reference: the final assistant turn, one valid
  number drawn at random (what a person writing labels would produce), used by SFT; and
* ``--prompts`` rows (default 480) with a prompt only: no assistant turn and no answer, only
  the ``low``, ``high`` and ``parity`` columns the verifier reads. SFT cannot use them; RFT can.

::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "Name an even number between 818 and 830."},
                  {"role": "assistant", "content": "824"}], "low": 818, "high": 830, "parity": "even"}
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "Name an odd number between 57 and 63."}],
     "low": 57, "high": 63, "parity": "odd"}

"Between" is exclusive. No ``answer`` column: rftkit would take one as a reference output for
SFT. The held-out ranges never share their lower bound with a training range. Run from
anywhere; the output is byte-identical for the same arguments::

    python examples/flagship/make_data.py            # writes train.jsonl and eval.jsonl here
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "Reply with one whole number only, as digits."
QUESTION = "Name an {parity} number between {low} and {high}."
LOW, HIGH = 20, 980  # lower bounds are drawn from this range
WIDTH = (4, 20)  # high - low


def valid_numbers(low: int, high: int, parity: str) -> list[int]:
    """The right answers: numbers strictly between ``low`` and ``high`` with the parity.

    >>> valid_numbers(818, 824, "even"), valid_numbers(57, 61, "odd")
    ([820, 822], [59])
    """
    return [x for x in range(low + 1, high) if x % 2 == (parity == "odd")]


def make_row(low: int, high: int, parity: str, reference: int | None) -> dict:
    """One chat row; with ``reference``, the assistant turn is that number.

    >>> make_row(818, 824, "even", 822)["messages"][-1]["content"], make_row(818, 824, "even", None)["parity"]
    ('822', 'even')
    """
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION.format(parity=parity, low=low, high=high)},
    ]
    if reference is not None:
        messages.append({"role": "assistant", "content": str(reference)})
    return {"messages": messages, "low": low, "high": high, "parity": parity}


def make_rows(n_labeled: int, n_prompts: int, n_eval: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Training rows (labeled first, then prompt-only) and held-out rows, with distinct lower bounds.

    >>> train, held_out = make_rows(4, 10, 5, seed=0)
    >>> len(train), len(held_out), sum(len(r["messages"]) == 3 for r in train)
    (14, 5, 4)
    >>> bool({r["low"] for r in train} & {r["low"] for r in held_out})
    False
    """
    rng = random.Random(seed)
    lows = list(range(LOW, HIGH + 1))
    rng.shuffle(lows)
    total = n_labeled + n_prompts + n_eval
    if total > len(lows):
        raise SystemExit(f"at most {len(lows)} distinct ranges; asked for {total}")
    ranges = [(low, low + rng.randint(*WIDTH), rng.choice(["even", "odd"])) for low in lows[:total]]
    held_out = [make_row(*r, None) for r in ranges[:n_eval]]
    train = [make_row(*r, rng.choice(valid_numbers(*r))) for r in ranges[n_eval : n_eval + n_labeled]]
    train += [make_row(*r, None) for r in ranges[n_eval + n_labeled :]]
    return train, held_out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    parser.add_argument("--labeled", type=int, default=32, help="training rows with a reference output")
    parser.add_argument("--prompts", type=int, default=480, help="training rows with a prompt only")
    parser.add_argument("--eval", type=int, default=100, help="held-out rows")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()
    train, held_out = make_rows(args.labeled, args.prompts, args.eval, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "eval.jsonl", held_out)
    print(f"wrote {len(train)} train ({args.labeled} labeled) and {len(held_out)} eval rows to {args.out}")


if __name__ == "__main__":
    main()
