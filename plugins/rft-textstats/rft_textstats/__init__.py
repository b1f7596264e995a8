"""Text-statistics graders for rftkit, shipped as a separately installable plugin.

Registered through the ``rft`` entry point group (see ``pyproject.toml``), so after
``pip install rft-textstats`` they appear in ``rft graders`` under the plugin name
``textstats`` with no other change.
"""

from __future__ import annotations

import rft

__version__ = "0.1.0"
__all__ = ["DistinctNgrams", "WordCount"]


@rft.grader(name="distinct_ngrams", range=(0.0, 1.0))
class DistinctNgrams:
    """Share of the completion's word n-grams that are distinct (1.0 = no repetition).

    Args:
        n: the n-gram size in words.

    >>> DistinctNgrams(n=1)("the cat the cat").score  # 2 distinct of 4 words
    0.5
    """

    def __init__(self, n: int = 2):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"distinct_ngrams: n must be a whole number >= 1, got {n!r}")
        self.n = n

    def __call__(self, completion: str) -> rft.Grade | None:
        words = completion.lower().split()
        grams = [tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)]
        if not grams:
            return rft.Grade(None, reason=f"fewer than {self.n} words")
        share = len(set(grams)) / len(grams)
        return rft.Grade(share, reason=f"{len(set(grams))} distinct of {len(grams)} {self.n}-grams")


@rft.grader(name="word_count", range=(0.0, 1.0))
class WordCount:
    """1.0 when the completion's word count is within [min_words, max_words].

    >>> WordCount(min_words=2, max_words=3)("one two three four").score
    0.0
    """

    def __init__(self, min_words: int = 0, max_words: int | None = None):
        if max_words is not None and max_words < min_words:
            raise ValueError(f"word_count: max_words ({max_words}) is below min_words ({min_words})")
        self.min_words, self.max_words = min_words, max_words

    def __call__(self, completion: str) -> rft.Grade:
        n = len(completion.split())
        ok = n >= self.min_words and (self.max_words is None or n <= self.max_words)
        bounds = f"[{self.min_words}, {self.max_words if self.max_words is not None else '∞'}]"
        return rft.Grade(float(ok), reason=f"{n} words {'within' if ok else 'outside'} {bounds}")


@rft.hookimpl
def rft_register_graders(register):
    register(DistinctNgrams)
    register(WordCount)
