"""Generate the agent example's data: shop questions only a tool call can answer (deterministic).

Every row carries its own shop (``shop``: product → stock and price), the asked ``product``
and what is asked (``ask``: ``stock`` or ``price``). Three files:

- ``train.jsonl``: ``--traces`` rows in OpenAI's function-calling fine-tuning format — the
  user question, the assistant's tool call (arguments as a JSON string, as OpenAI stores
  them), the tool's result and the final answer — about a dozen common products; the SFT
  stage learns the tool format from them. Then ``--prompts`` rows with the question only, about
  some 200 other products (RFT prompts: no reference answer, the environment verifies).
- ``eval.jsonl``: ``--eval`` held-out questions about products in neither, in unseen shops.

Run from anywhere; the output is byte-identical for the same arguments::

    python examples/agent/make_data.py
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "You are a shop assistant. Use the tools to look facts up, then answer in one short sentence."
QUESTIONS = {
    "stock": ["How many {p}s are in stock?", "How many units of {p} do you have?", "Do you have {p}s? How many?"],
    "price": ["What does one {p} cost?", "How much is a {p}, in cents?", "What is the price of a {p}?"],
}
ANSWERS = {"stock": "We have {v} {p}s in stock.", "price": "One {p} costs {v} cents."}
#: The few products of the SFT traces: common words the model copies easily.
TRACE_PRODUCTS = "apple pear plum fig lemon lime mango melon peach cherry grape kiwi".split()
#: The products of the RFT questions: many more, plain and odd words (copying the item name out
#: of "How many quinces …?" into the call is what the traces cannot show for every word).
PROMPT_PRODUCTS = (
    "banana orange apricot carrot onion potato tomato pepper garlic ginger radish turnip celery spinach leek "
    "bean pea corn lentil quinoa barley oat rice wheat millet rye bagel muffin scone waffle pretzel cracker "
    "biscuit cookie brownie donut croissant baguette noodle dumpling taco burrito sushi ramen tofu tempeh "
    "cheese butter yogurt cream milk egg honey jam syrup vinegar mustard ketchup pickle olive caper anchovy "
    "sardine salmon tuna cod shrimp lobster crab oyster mussel clam squid octopus scallop candle lamp bulb "
    "battery cable charger speaker headphone keyboard mouse monitor printer scanner router stapler pencil "
    "marker crayon eraser ruler notebook folder envelope stamp sticker ribbon button zipper needle thimble "
    "sock glove scarf mitten sandal slipper boot sneaker helmet umbrella backpack wallet suitcase blanket "
    "pillow towel sponge bucket broom shovel rake hammer wrench screwdriver drill chisel pliers ladder hose "
    "kettle teapot ladle spatula whisk skillet wok colander grater peeler corkscrew napkin coaster saucer"
).split()
#: Held-out products: in neither the traces nor the RFT questions.
EVAL_PRODUCTS = (
    "papaya guava quince walnut almond cashew hazelnut pecan date prune raisin nectarine kumquat lychee "
    "avocado artichoke parsnip shallot rhubarb fennel thermos funnel trowel easel compass magnet padlock "
    "whistle kazoo yoyo"
).split()
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string", "description": 'the item\'s name, e.g. "pear".'}},
                "required": ["item"],
            },
            "return": {"type": "integer"},
        },
    }
    for name, desc in (
        ("stock", "How many units of an item the shop has in stock."),
        ("price", "The price of one unit of an item, in cents."),
    )
]


def make_row(rng: random.Random, products: list[str], *, trace: bool) -> dict:
    """One question about a fresh shop of 3–5 products; with ``trace``, the whole tool-use answer.

    >>> row = make_row(random.Random(0), TRACE_PRODUCTS, trace=True)
    >>> [m["role"] for m in row["messages"]]
    ['system', 'user', 'assistant', 'tool', 'assistant']
    """
    stocked = rng.sample(products, rng.randint(3, 5))
    shop = {p: {"stock": rng.randint(2, 99), "price": rng.randint(10, 990)} for p in stocked}
    product, ask = rng.choice(stocked), rng.choice(["stock", "price"])
    question = rng.choice(QUESTIONS[ask]).format(p=product)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    if trace:
        value = shop[product][ask]
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": ask, "arguments": json.dumps({"item": product})},
        }
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": str(value)},
            {"role": "assistant", "content": ANSWERS[ask].format(v=value, p=product)},
        ]
    row: dict = {"messages": messages, "shop": shop, "product": product, "ask": ask}
    if trace:
        row["tools"] = TOOLS
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=48, help="rows with a whole tool-use answer (SFT)")
    ap.add_argument("--prompts", type=int, default=400, help="rows with the question only (RFT)")
    ap.add_argument("--eval", type=int, default=60, help="held-out questions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    train = [make_row(rng, TRACE_PRODUCTS, trace=True) for _ in range(args.traces)]
    train += [make_row(rng, PROMPT_PRODUCTS, trace=False) for _ in range(args.prompts)]
    held = [make_row(rng, EVAL_PRODUCTS, trace=False) for _ in range(args.eval)]
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held)):
        with (args.out / name).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"wrote {len(rows)} rows to {args.out / name}")


if __name__ == "__main__":
    main()
