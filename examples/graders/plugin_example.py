"""A plugin module: a function grader and a parameterised class grader.

Use it from the command line or name it in a grader-set file::

    rft graders --plugin examples/graders/plugin_example.py
    rft grade --data examples/grade/rows.jsonl --completions examples/grade/completions.jsonl \\
        --graders examples/graders/keywords.yaml

where ``keywords.yaml`` holds::

    plugins: [plugin_example.py]          # relative to the grader-set file
    graders:
      - name: keyword_coverage
        keywords: [because, times]
        weight: 0.5
      - name: shows_work

A parameterised grader is a class: its ``__init__`` parameters come from the
grader-set file, and its instances must pickle (Ray ships them to worker
processes), so keep it at module level and store only plain data on it.
"""

from __future__ import annotations

import re

import rft


@rft.grader(range=(0.0, 1.0))
def shows_work(completion: str) -> float:
    """1.0 when the completion shows a calculation (an operator between two numbers)."""
    return float(bool(re.search(r"\d\s*[-+*/×x=]\s*\d", completion)))


@rft.grader(name="keyword_coverage", range=(0.0, 1.0))
class KeywordCoverage:
    """The share of the given keywords the completion mentions (case-insensitive).

    Args:
        keywords: the words to look for.
        whole_words: match whole words only.

    >>> KeywordCoverage(["because", "times"])("6 times 4, because boxes").score
    1.0
    """

    def __init__(self, keywords: list[str], whole_words: bool = True):
        if not keywords or isinstance(keywords, str):
            raise ValueError("keyword_coverage: `keywords` must be a non-empty list of words")
        self.keywords = [str(k) for k in keywords]
        self.whole_words = whole_words

    def __call__(self, completion: str) -> rft.Grade:
        text = completion.lower()
        found = [
            k
            for k in self.keywords
            if (re.search(rf"\b{re.escape(k.lower())}\b", text) if self.whole_words else k.lower() in text)
        ]
        missing = [k for k in self.keywords if k not in found]
        reason = f"missing {', '.join(missing)}" if missing else "all keywords present"
        return rft.Grade(len(found) / len(self.keywords), reason=reason)


@rft.hookimpl
def rft_register_graders(register):
    register(shows_work)
    register(KeywordCoverage)
