"""LIME on item texts: which words make a model score an item high.

LIME (Ribeiro et al., 2016, "Why should I trust you?") removes random
subsets of a text's words, scores each perturbed text with the model, and
fits a weighted linear model on the word-presence indicators. Its coefficients are
the word weights.

Two modes share one code path:

* regression (:func:`explain_text`): the model returns one score per text,
  for example the recommender's score of a (user, item) pair when the item's
  text is replaced by the perturbed one (:func:`explain_recommendation_text`);
* classification (:func:`explain_text_classifier`): the model returns class
  probabilities (a ``predict_proba``), and one class is explained.

All perturbed texts of one explanation go to the model in one call, after
duplicates are removed: a title of 8 words has at most 256 distinct
subsets, however many samples LIME draws. Each explanation builds its own
``LimeTextExplainer`` from ``seed``, so the same call gives the same weights.

Tokenisation. LIME's default splits on ``\\W+``, which leaves a Chinese title
(no spaces) as one token. ``tokenizer="cjk"`` makes each CJK ideograph or
kana its own token and keeps runs of other word characters (Latin words,
digits) whole, as :func:`cjk_tokenize` does. ``"auto"``, the default, picks
``"cjk"`` when the text has such characters. ``keep_words`` names words that
are never removed, such as the labels "Tags" and "Genres" that the item-text
template adds: they are part of the text the model reads, but not a
property of the item. Both are regular expressions given to LIME as its
``split_expression``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: A model for LIME in regression mode: a list of texts in, one score per text out.
TextScorer = Callable[[list[str]], np.ndarray]
#: A classifier for LIME: a list of texts in, an (n_texts, n_classes) probability array out.
TextClassifier = Callable[[list[str]], np.ndarray]

TOKENIZERS = ("auto", "words", "cjk")

# Scripts written without spaces between words: CJK ideographs (base block,
# extension A, compatibility block, extensions B and later) and Japanese kana.
_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_RE = re.compile(f"[{_CJK_CHARS}]")
_CJK_TOKEN_RE = re.compile(f"[{_CJK_CHARS}]|[^\\W{_CJK_CHARS}]+")
# Zero-width splits after a CJK character and before one that follows a word character. Both look
# behind, so LIME's separator test (the expression matched at the start of a token) never fires
# on a lone CJK character.
_CJK_SPLITS = f"|(?<=[{_CJK_CHARS}])(?=\\w)|(?<=\\w)(?=[{_CJK_CHARS}])"

COL_WORD = "word"
COL_WEIGHT = "weight"


def template_words(template: str) -> tuple[str, ...]:
    """Return the literal words of an item-text template, e.g. ``("Tags", "Genres")`` for the default one."""
    literal = re.sub(r"\{[^{}]*\}", " ", template)
    return tuple(dict.fromkeys(re.findall(r"\w+", literal)))


def _default_template_words() -> tuple[str, ...]:
    from vidrec_lab.features.text import DEFAULT_TEMPLATE

    return template_words(DEFAULT_TEMPLATE)


def cjk_tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens: one per CJK ideograph or kana, one per run of other word characters.

    ``"功夫熊猫 Kung Fu Panda 2"`` gives ``['功', '夫', '熊', '猫', 'Kung', 'Fu', 'Panda', '2']``.
    Punctuation and spaces are not tokens, so LIME keeps them when it
    removes words.

    Args:
        text (str): Input text.

    Returns:
        list of str: Tokens in text order.
    """
    if not isinstance(text, str):
        raise TypeError(f"cjk_tokenize expects a string; got {type(text).__name__} {text!r}")
    return _CJK_TOKEN_RE.findall(text)


def has_cjk(text: str) -> bool:
    """Return True when ``text`` contains a CJK ideograph or kana."""
    return bool(_CJK_RE.search(text))


def split_expression_for(text: str, tokenizer: str | Callable[[str], list[str]] = "auto", keep_words: Sequence[str] = ()):
    """Return the ``split_expression`` to give ``LimeTextExplainer`` for ``text``.

    Args:
        text (str): The text to explain (read by ``"auto"`` only).
        tokenizer (str or callable): ``"auto"``, ``"words"`` (LIME's ``\\W+``
            split), ``"cjk"`` (the tokens of :func:`cjk_tokenize`), or a
            function from a string to its tokens in text order, passed to
            LIME unchanged.
        keep_words (sequence of str): Whole words treated as separators, so
            LIME never removes them (built-in tokenizers only).

    Returns:
        str or callable: A regular expression or the tokenizer function.
    """
    if callable(tokenizer):
        if keep_words:
            raise ValueError("keep_words works with the built-in tokenizers only; a tokenizer function must skip them itself")
        return tokenizer
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)} or a callable; got {tokenizer!r}")
    separator = r"\W"
    if keep_words:
        words = sorted({str(w) for w in keep_words}, key=len, reverse=True)
        separator = r"(?:\W|\b(?:" + "|".join(re.escape(w) for w in words) + r")\b)"
    expression = f"{separator}+"
    if tokenizer == "cjk" or (tokenizer == "auto" and has_cjk(text)):
        expression = f"(?:{expression}){_CJK_SPLITS}"
    return expression


def _indexed(text: str, tokenizer, keep_words: Sequence[str] = ()):
    from lime.lime_text import IndexedString

    return IndexedString(text, split_expression=split_expression_for(text, tokenizer, keep_words), bow=True)


def text_tokens(text: str, tokenizer: str | Callable[[str], list[str]] = "auto", keep_words: Sequence[str] = ()) -> list[str]:
    """Return the distinct tokens LIME will perturb in ``text``, in order of first appearance."""
    indexed = _indexed(text, tokenizer, keep_words)
    return [str(indexed.word(i)) for i in range(indexed.num_words())]


def remove_tokens(
    text: str, tokens: Sequence[str], tokenizer: str | Callable[[str], list[str]] = "auto", keep_words: Sequence[str] = ()
) -> str:
    """Remove every occurrence of ``tokens`` from ``text`` the way LIME's perturbations do.

    Args:
        text (str): Input text.
        tokens (sequence of str): Tokens to remove (as listed by :func:`text_tokens`).
        tokenizer, keep_words: As in :func:`split_expression_for`.

    Returns:
        str: The text without those tokens; separators are kept.

    Raises:
        KeyError: If a token is not in the text.
    """
    indexed = _indexed(text, tokenizer, keep_words)
    vocabulary = {str(indexed.word(i)): i for i in range(indexed.num_words())}
    unknown = [token for token in tokens if token not in vocabulary]
    if unknown:
        raise KeyError(f"remove_tokens: token {unknown[0]!r} is not in the text {text!r}; tokens: {list(vocabulary)}")
    return indexed.inverse_removing([vocabulary[token] for token in tokens])


@dataclass
class TextExplanation:
    """LIME word weights for one text and the numbers behind them.

    Attributes:
        text (str): The explained text.
        weights (pandas.DataFrame): ``word`` and ``weight``, one row per word
            kept by LIME, sorted by absolute weight (largest first). A
            positive weight means the word raises the explained output.
        output (float): The model's output on the full text (score or class probability).
        intercept (float): Intercept of LIME's linear model.
        local_prediction (float): The linear model's prediction for the full text.
        r2 (float): Weighted R² of the linear model on the perturbed samples.
        label (str or None): Class explained in classification mode, None in regression mode.
        tokenizer (str or callable): Tokenizer used, for removing words later.
        keep_words (tuple of str): Words that were never removed.
        num_samples (int): Perturbed samples drawn.
        unique_texts (int): Distinct texts the model scored.
        seed (int): Seed of the perturbations.
        seconds (float): Wall time of the explanation.
        context (dict): Caller's identifiers (user, item, model), shown in tables.
    """

    text: str
    weights: pd.DataFrame
    output: float
    intercept: float
    local_prediction: float
    r2: float
    label: str | None
    tokenizer: str | Callable[[str], list[str]]
    num_samples: int
    unique_texts: int
    seed: int
    seconds: float
    context: dict = field(default_factory=dict)
    keep_words: tuple[str, ...] = ()

    def top_words(self, n: int, *, positive_only: bool = False) -> list[str]:
        """Return the ``n`` words with the largest weight (signed), or fewer if the text has fewer."""
        table = self.weights.sort_values(COL_WEIGHT, ascending=False, kind="mergesort")
        if positive_only:
            table = table[table[COL_WEIGHT] > 0]
        return table[COL_WORD].head(n).tolist()

    def weight_of(self) -> dict[str, float]:
        """Return ``{word: weight}``."""
        return dict(zip(self.weights[COL_WORD], self.weights[COL_WEIGHT].astype(float)))

    def summary(self) -> dict:
        """Return the scalar fields as a dict (for tables)."""
        return {
            **self.context,
            "label": self.label,
            "output": self.output,
            "local_prediction": self.local_prediction,
            "intercept": self.intercept,
            "r2": self.r2,
            "words": len(self.weights),
            "num_samples": self.num_samples,
            "unique_texts": self.unique_texts,
            "seconds": self.seconds,
        }


class _DedupedBatch:
    """Call a text model once per LIME batch, on the distinct texts only, and check its output."""

    def __init__(self, model: Callable[[list[str]], np.ndarray], *, n_outputs: int | None, name: str) -> None:
        self.model = model
        self.n_outputs = n_outputs
        self.name = name
        self.calls = 0
        self.unique_texts = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        values = np.asarray(self.model(unique.tolist()), dtype=np.float64)
        self.calls += 1
        self.unique_texts += len(unique)
        if self.n_outputs is None:
            values = values.reshape(len(unique), -1) if values.ndim == 2 else values
            if values.shape != (len(unique),) and values.shape != (len(unique), 1):
                raise ValueError(
                    f"{self.name}: the scoring function returned shape {values.shape} for {len(unique)} texts; "
                    "expected one score per text"
                )
            values = values.reshape(len(unique), 1)
        elif values.ndim != 2 or values.shape[0] != len(unique):
            raise ValueError(
                f"{self.name}: predict_proba returned shape {values.shape} for {len(unique)} texts; "
                "expected (n_texts, n_classes)"
            )
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise ValueError(f"{self.name}: the model returned a non-finite output for the text {unique[row]!r}")
        return values[inverse]


def _check_explain_args(text: str, num_samples: int, num_features: int | None, where: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: text must be a non-empty string; got {text!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"{where}: num_samples must be an integer of at least 2; got {num_samples!r}")
    if num_features is not None and (not isinstance(num_features, (int, np.integer)) or num_features < 1):
        raise ValueError(f"{where}: num_features must be a positive integer or None; got {num_features!r}")


def _run_lime(
    text: str,
    batch: _DedupedBatch,
    *,
    label_index: int,
    class_names: list[str] | None,
    num_features: int | None,
    num_samples: int,
    tokenizer,
    keep_words: Sequence[str],
    seed: int,
    kernel_width: float,
    where: str,
) -> tuple:
    from lime.lime_text import LimeTextExplainer

    split = split_expression_for(text, tokenizer, keep_words)
    n_words = _indexed(text, tokenizer, keep_words).num_words()
    if n_words == 0:
        raise ValueError(f"{where}: the text {text!r} has no tokens to perturb with tokenizer {tokenizer!r}")
    explainer = LimeTextExplainer(
        kernel_width=kernel_width,
        class_names=class_names,
        split_expression=split,
        bow=True,
        random_state=int(seed),
    )
    started = time.perf_counter()
    explanation = explainer.explain_instance(
        text,
        batch,
        labels=(label_index,),
        num_features=n_words if num_features is None else int(num_features),
        num_samples=int(num_samples),
    )
    seconds = time.perf_counter() - started
    pairs = explanation.as_list(label=label_index)
    weights = pd.DataFrame([(str(word), float(weight)) for word, weight in pairs], columns=[COL_WORD, COL_WEIGHT])
    output = float(explanation.predict_proba[label_index])
    local_prediction = float(np.ravel(explanation.local_pred)[0])
    return weights, output, float(explanation.intercept[label_index]), local_prediction, float(explanation.score), seconds


def explain_text(
    score_fn: TextScorer,
    text: str,
    *,
    num_features: int | None = None,
    num_samples: int = 1000,
    tokenizer: str | Callable[[str], list[str]] = "auto",
    keep_words: Sequence[str] = (),
    seed: int = 0,
    kernel_width: float = 25.0,
    context: dict | None = None,
) -> TextExplanation:
    """Explain a text-to-score function at ``text`` with LIME in regression mode.

    Args:
        score_fn (callable): Takes a list of texts and returns one score per
            text. It is called once, with the distinct perturbed texts.
        text (str): The text to explain.
        num_features (int, optional): Words kept in the explanation; None keeps every word.
        num_samples (int): Perturbed samples LIME draws (the first is the full text).
        tokenizer (str or callable): ``"auto"``, ``"words"``, ``"cjk"`` or a
            function (see :func:`split_expression_for`).
        keep_words (sequence of str): Words LIME never removes (template labels).
        seed (int): Seed of the perturbations.
        kernel_width (float): Width of LIME's exponential kernel on the cosine
            distance (times 100) between word-presence vectors; LIME's default 25.
        context (dict, optional): Identifiers stored in the result (user, item, ...).

    Returns:
        TextExplanation: Word weights and diagnostics.

    Raises:
        ValueError: On an empty text, a text without tokens, bad sizes, or a
            scoring function that returns the wrong shape or a non-finite score.
    """
    where = "explain_text"
    _check_explain_args(text, num_samples, num_features, where)
    batch = _DedupedBatch(score_fn, n_outputs=None, name=where)
    weights, output, intercept, local, r2, seconds = _run_lime(
        text, batch, label_index=0, class_names=["score"], num_features=num_features, num_samples=num_samples,
        tokenizer=tokenizer, keep_words=keep_words, seed=seed, kernel_width=kernel_width, where=where,
    )
    logger.debug("LIME on %r: %d distinct texts scored in %.2f s", text[:40], batch.unique_texts, seconds)
    return TextExplanation(
        text=text, weights=weights, output=output, intercept=intercept, local_prediction=local, r2=r2,
        label=None, tokenizer=tokenizer, num_samples=int(num_samples), unique_texts=batch.unique_texts,
        seed=int(seed), seconds=seconds, context=dict(context or {}), keep_words=tuple(keep_words),
    )


def explain_text_classifier(
    predict_proba: TextClassifier,
    text: str,
    *,
    label: int | str | None = None,
    class_names: Sequence[str] | None = None,
    num_features: int | None = None,
    num_samples: int = 1000,
    tokenizer: str | Callable[[str], list[str]] = "auto",
    keep_words: Sequence[str] = (),
    seed: int = 0,
    kernel_width: float = 25.0,
    context: dict | None = None,
) -> TextExplanation:
    """Explain one class probability of a text classifier at ``text`` with LIME.

    Args:
        predict_proba (callable): Takes a list of texts and returns an
            (n_texts, n_classes) array of probabilities. For a multi-label
            classifier each column is that label's own probability.
        text (str): The text to explain.
        label (int or str, optional): Class to explain, by index or by name in
            ``class_names``; None explains the class with the highest
            probability on ``text``.
        class_names (sequence of str, optional): Names of the columns of ``predict_proba``.
        num_features, num_samples, tokenizer, keep_words, seed, kernel_width, context: As in :func:`explain_text`.

    Returns:
        TextExplanation: Word weights for the chosen class, whose name is in ``label``.
    """
    where = "explain_text_classifier"
    _check_explain_args(text, num_samples, num_features, where)
    names = list(class_names) if class_names is not None else None
    first = np.asarray(predict_proba([text]), dtype=np.float64)
    if first.ndim != 2 or first.shape[0] != 1:
        raise ValueError(f"{where}: predict_proba returned shape {first.shape} for one text; expected (1, n_classes)")
    n_classes = first.shape[1]
    if names is not None and len(names) != n_classes:
        raise ValueError(f"{where}: {len(names)} class_names for {n_classes} predict_proba columns")
    names = names if names is not None else [str(i) for i in range(n_classes)]
    if label is None:
        label_index = int(np.argmax(first[0]))
    elif isinstance(label, str):
        if label not in names:
            raise ValueError(f"{where}: label {label!r} is not among the classes {names}")
        label_index = names.index(label)
    elif isinstance(label, (int, np.integer)) and 0 <= label < n_classes:
        label_index = int(label)
    else:
        raise ValueError(f"{where}: label must be a class name or an index in [0, {n_classes}); got {label!r}")

    batch = _DedupedBatch(predict_proba, n_outputs=n_classes, name=where)
    weights, output, intercept, local, r2, seconds = _run_lime(
        text, batch, label_index=label_index, class_names=names, num_features=num_features,
        num_samples=num_samples, tokenizer=tokenizer, keep_words=keep_words, seed=seed, kernel_width=kernel_width,
        where=where,
    )
    return TextExplanation(
        text=text, weights=weights, output=output, intercept=intercept, local_prediction=local, r2=r2,
        label=names[label_index], tokenizer=tokenizer, num_samples=int(num_samples),
        unique_texts=batch.unique_texts, seed=int(seed), seconds=seconds, context=dict(context or {}),
        keep_words=tuple(keep_words),
    )


def explain_recommendation_text(
    recommender,
    user: str,
    item: str,
    *,
    history: pd.DataFrame | None = None,
    num_features: int | None = None,
    num_samples: int = 1000,
    tokenizer: str | Callable[[str], list[str]] = "auto",
    keep_words: Sequence[str] | None = None,
    seed: int = 0,
) -> TextExplanation:
    """Explain a recommender's score of ``(user, item)`` as a function of the item's text.

    The recommender must offer ``item_text(item)`` and
    ``text_scorer(user, item, history=...)``, like
    :class:`vidrec_lab.explain.scorer.FusedContentRecommender`: every
    perturbed text goes through the real text encoder and the real user
    vector, with the item's other modalities unchanged.

    Args:
        recommender: The model explained.
        user (str): User id.
        item (str): Item id.
        history (pandas.DataFrame, optional): Interactions that define the
            user vector; default the recommender's training table.
        num_features, num_samples, tokenizer, seed: As in :func:`explain_text`.
        keep_words (sequence of str, optional): Words LIME never removes;
            None keeps the literal words of
            :data:`vidrec_lab.features.text.DEFAULT_TEMPLATE` ("Tags", "Genres").

    Returns:
        TextExplanation: Word weights, with the user and item ids in ``context``.
    """
    for name in ("item_text", "text_scorer"):
        if not callable(getattr(recommender, name, None)):
            raise TypeError(
                f"explain_recommendation_text: {type(recommender).__name__} has no method {name}(); "
                "pass a recommender that scores item texts, such as FusedContentRecommender"
            )
    text = recommender.item_text(item)
    score_fn = recommender.text_scorer(user, item, history=history)
    return explain_text(
        score_fn, text, num_features=num_features, num_samples=num_samples, tokenizer=tokenizer,
        keep_words=_default_template_words() if keep_words is None else keep_words, seed=seed,
        context={"user_id": str(user), "item_id": str(item)},
    )


def plot_word_weights(explanation: TextExplanation, ax=None, *, max_words: int = 10, title: str | None = None):
    """Draw LIME word weights as horizontal bars (largest absolute weight on top) and return the Axes.

    Positive weights (the word raises the output) are blue, negative ones
    vermillion. Chinese words render through the CJK fallback font of
    :func:`vidrec_lab.viz.set_style`.

    Args:
        explanation (TextExplanation): Result of an ``explain_*`` function.
        ax (matplotlib.axes.Axes, optional): Axes to draw on; default a new one.
        max_words (int): Words shown.
        title (str, optional): Axes title; default names the output explained.
    """
    from vidrec_lab.viz import PALETTE, new_axes

    if ax is None:
        _, ax = new_axes()
    table = explanation.weights.head(max_words).iloc[::-1]
    colors = [PALETTE[0] if w > 0 else PALETTE[3] for w in table[COL_WEIGHT]]
    ax.barh(table[COL_WORD].astype(str), table[COL_WEIGHT].to_numpy(), color=colors)
    ax.axvline(0.0, color="black", lw=0.6)
    target = "score" if explanation.label is None else f"P({explanation.label})"
    ax.set_xlabel(f"LIME weight on {target}")
    if title is None:
        title = f"{target} = {explanation.output:.3f} (LIME R² {explanation.r2:.2f})"
    ax.set_title(title)
    return ax
