"""The plugin's own tests, using rftkit's contract check."""

from rft_textstats import DistinctNgrams, WordCount

from rft.testing import check_grader


def test_distinct_ngrams_keeps_the_contract():
    outcomes = check_grader(
        DistinctNgrams(n=2), [{"completion": "a b a b"}, {"completion": "a b c"}, {"completion": "a"}]
    )
    # a b a b: bigrams ab, ba, ab -> 2 distinct of 3; a b c: all distinct; one word: no bigram
    assert [o.score for o in outcomes] == [2 / 3, 1.0, None]


def test_word_count_keeps_the_contract():
    outcomes = check_grader(WordCount(min_words=2, max_words=3), [{"completion": "one"}, {"completion": "one two"}])
    assert [o.score for o in outcomes] == [0.0, 1.0]
