"""SHAP attributions of a recommendation score to modalities, feature groups and tokens.

Three kinds of attribution, each computed with the ``shap`` package:

* **modalities** (:func:`explain_modalities`): the players are the item's
  modalities (text, behaviour, video, audio). A coalition keeps some of them
  and removes the others through the fusion module's mask, so a removed
  modality is absent to the model, not a zero vector passed off as data.
  The value of the empty coalition is the recommender's stated background
  score (see :class:`vidrec_lab.explain.scorer.FusedContentRecommender`).
  With at most a handful of players, ``shap``'s exact explainer evaluates
  all 2^M coalitions, so the values are exact Shapley values and add up to
  the score.
* **feature groups** (:func:`explain_text_fields`): the players are the
  fields of the item text (title, genres, tags, description) and the
  item's other modalities. A removed field is left out when the item text is
  composed, and the text goes through the real encoder again.
  :func:`explain_feature_vector` covers scorers without a fusion mask: a
  removed group takes its values from background rows, averaged over them.
* **tokens** (:func:`explain_classifier_tokens`): token-level SHAP for a text
  classifier (the fine-tuned genre classifier) through ``shap``'s ``Text``
  masker and the model's own tokenizer.

Note:
    ``shap`` compiles its numba kernels on the first explanation in a
    process. That took 8 to 30 s on a shared 2-core machine. Later
    explanations take milliseconds plus the model calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_DESCRIPTION, COL_GENRES, COL_ITEM, COL_TAGS, COL_TITLE, COL_USER
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

COL_FEATURE = "feature"
COL_SHAP = "shap_value"
COL_PRESENT = "present"
COL_BASE = "base_value"
COL_OUTPUT = "output"
COL_TOKEN = "token"

TEXT_FIELDS = (COL_TITLE, COL_GENRES, COL_TAGS, COL_DESCRIPTION)
# Coalitions are enumerated exhaustively; 2^12 model calls is the most worth waiting for.
MAX_EXACT_PLAYERS = 12


@dataclass
class ShapAttribution:
    """SHAP values of one model output over a few named players (modalities or feature groups).

    Attributes:
        features (list of str): Player names.
        values (numpy.ndarray): One SHAP value per player.
        base_value (float): Output with every player removed.
        output (float): The model's output with every player present, computed
            on the model's ordinary path (not through the coalitions), which
            is what :func:`vidrec_lab.explain.checks.additivity_check` compares against.
        data (numpy.ndarray): 1.0 where the item has the player, else 0.0
            (a player the item lacks always gets 0).
        kind (str): ``"modality"`` or ``"group"``.
        context (dict): Identifiers (user, item).
    """

    features: list[str]
    values: np.ndarray
    base_value: float
    output: float
    data: np.ndarray
    kind: str
    context: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Return one row per player: feature, present, shap_value (largest absolute value first)."""
        table = pd.DataFrame({COL_FEATURE: self.features, COL_PRESENT: self.data.astype(bool), COL_SHAP: self.values})
        return table.reindex(table[COL_SHAP].abs().sort_values(ascending=False, kind="mergesort").index).reset_index(drop=True)

    def to_shap(self):
        """Return a ``shap.Explanation`` for ``shap.plots``."""
        import shap

        return shap.Explanation(
            values=np.asarray(self.values, dtype=float),
            base_values=float(self.base_value),
            data=np.asarray(self.data, dtype=float),
            feature_names=list(self.features),
        )


def _exact_shapley(value_fn: Callable[[np.ndarray], np.ndarray], names: Sequence[str], data: np.ndarray) -> tuple[np.ndarray, float]:
    """Return (SHAP values, base value) of ``value_fn`` at the all-ones coalition with shap's exact explainer.

    ``value_fn`` maps an (n, M) 0/1 array of coalitions to n outputs. Players
    with ``data == 0`` are reported as absent in the plots; the model decides
    what they do (for the scorers here: nothing).
    """
    import shap

    if len(names) > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact SHAP over {len(names)} players needs 2^{len(names)} model calls; use at most {MAX_EXACT_PLAYERS}")
    # A single background row of zeros: a masked player takes the value 0, i.e. "removed".
    masker = shap.maskers.Independent(np.zeros((1, len(names))), max_samples=1)
    explainer = shap.explainers.Exact(value_fn, masker, feature_names=list(names))
    result = explainer(np.ones((1, len(names))), silent=True)
    return np.asarray(result.values[0], dtype=float), float(np.ravel(result.base_values)[0])


def explain_modalities(
    recommender, user: str, item: str, *, history: pd.DataFrame | None = None, user_vector: np.ndarray | None = None
) -> ShapAttribution:
    """Attribute the (user, item) score to the item's modalities with exact SHAP over fusion masks.

    Args:
        recommender: A fitted :class:`~vidrec_lab.explain.scorer.FusedContentRecommender`
            (or any model with ``modalities_``, ``availability_``,
            ``item_index_``, ``coalition_scorer`` and ``pair_score``).
        user (str): User id.
        item (str): Item id.
        history (pandas.DataFrame, optional): Interactions that define the user vector.
        user_vector (numpy.ndarray, optional): That vector, when already computed.

    Returns:
        ShapAttribution: One value per modality of the model; a modality the
        item lacks gets 0 and ``data`` 0.
    """
    if user_vector is None:
        user_vector = recommender.user_vector(user, history=history)
    value_fn = recommender.coalition_scorer(user, item, user_vector=user_vector)
    names = list(recommender.modalities_)
    data = recommender.availability_[recommender.item_index_[str(item)]].astype(float)
    values, base = _exact_shapley(value_fn, names, data)
    return ShapAttribution(
        features=names,
        values=values,
        base_value=base,
        output=recommender.pair_score(user, item, user_vector=user_vector),
        data=data,
        kind="modality",
        context={COL_USER: str(user), COL_ITEM: str(item)},
    )


def explain_recommendations(
    recommender,
    pairs: pd.DataFrame,
    *,
    history: pd.DataFrame | None = None,
    progress: bool = True,
) -> list[ShapAttribution]:
    """Run :func:`explain_modalities` on every (user_id, item_id) row of ``pairs`` (e.g. a top-K table)."""
    require_columns(pairs, [COL_USER, COL_ITEM], where="explain_recommendations(pairs)")
    rows = list(zip(pairs[COL_USER].astype(str), pairs[COL_ITEM].astype(str)))
    vectors = {user: recommender.user_vector(user, history=history) for user in dict.fromkeys(user for user, _ in rows)}
    return [
        explain_modalities(recommender, user, item, user_vector=vectors[user])
        for user, item in tqdm(rows, desc="SHAP over modalities", unit="pair", disable=not progress)
    ]


def explain_text_fields(
    recommender,
    user: str,
    item: str,
    items: pd.DataFrame,
    *,
    fields: Sequence[str] = TEXT_FIELDS,
    template: str | None = None,
    cleaning=None,
    history: pd.DataFrame | None = None,
) -> ShapAttribution:
    """Attribute the (user, item) score to the fields of the item text and the item's other modalities.

    Each coalition composes the item text from the fields it keeps. The
    other fields are emptied, so the template drops them with their labels.
    The text is encoded by the recommender's text encoder, and the non-text
    modalities the coalition leaves out are removed through the fusion mask.
    With every field present the text must equal the recommender's item
    text, so pass the ``template`` and ``cleaning`` that built it.

    Args:
        recommender: A fitted FusedContentRecommender with a text encoder and item texts.
        user (str): User id.
        item (str): Item id.
        items (pandas.DataFrame): Item table with the fields.
        fields (sequence of str): Text fields to attribute to; fields not in
            the template are rejected.
        template (str, optional): Item text template; default
            :data:`vidrec_lab.features.text.DEFAULT_TEMPLATE`.
        cleaning (TextCleaningConfig, optional): Cleaning used for the item texts.
        history (pandas.DataFrame, optional): Interactions that define the user vector.

    Returns:
        ShapAttribution: Players ``field:<name>`` for each field, then the non-text modalities.

    Raises:
        ValueError: If the composed full text differs from the recommender's item text.
    """
    from vidrec_lab.features.text import DEFAULT_TEMPLATE, compose_item_text

    template = DEFAULT_TEMPLATE if template is None else template
    require_columns(items, [COL_ITEM, *fields], where="explain_text_fields(items)")
    unused = [name for name in fields if "{" + name + "}" not in template]
    if unused:
        raise ValueError(f"explain_text_fields: field {unused[0]!r} is not in the template {template!r}")
    row = items.loc[items[COL_ITEM].astype(str) == str(item)]
    if len(row) != 1:
        raise DataError(f"explain_text_fields: item {item!r} appears {len(row)} times in the item table; expected once")
    other = [name for name in recommender.modalities_ if name != recommender.text_modality]
    names = [f"field:{name}" for name in fields] + other

    def compose(kept_fields: np.ndarray) -> str:
        variant = row.copy()
        for name, keep in zip(fields, kept_fields):
            if not keep:
                empty_list = isinstance(variant[name].iloc[0], (list, tuple, np.ndarray))
                variant[name] = [[]] if empty_list else [""]
        return str(compose_item_text(variant, template, cleaning=cleaning).iloc[0])

    full_text = compose(np.ones(len(fields), dtype=bool))
    expected = recommender.item_text(item)
    if full_text != expected:
        raise ValueError(
            f"explain_text_fields: the item text composed from {list(fields)} is {full_text!r}, but the recommender "
            f"scores {expected!r}; pass the template and cleaning that built item_texts"
        )
    item_row = recommender.item_index_[str(item)]
    n_fields = len(fields)

    def value_fn(coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions) > 0.5
        texts = [compose(z[:n_fields]) for z in coalitions]
        present = np.ones((len(coalitions), len(recommender.modalities_)), dtype=bool)
        for j, name in enumerate(other):
            present[:, recommender.modalities_.index(name)] = coalitions[:, n_fields + j]
        return recommender.score_variants(user, item, present=present, texts=texts, history=history)

    availability = recommender.availability_[item_row]
    field_data = [float(compose(np.arange(n_fields) == i) != "") for i in range(n_fields)]
    other_data = [float(availability[recommender.modalities_.index(name)]) for name in other]
    data = np.array(field_data + other_data)
    values, base = _exact_shapley(value_fn, names, data)
    return ShapAttribution(
        features=names,
        values=values,
        base_value=base,
        output=recommender.pair_score(user, item, history=history),
        data=data,
        kind="group",
        context={COL_USER: str(user), COL_ITEM: str(item)},
    )


def explain_feature_vector(
    score_fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    groups: Mapping[str, Sequence[int] | slice],
    background: np.ndarray,
    *,
    context: dict | None = None,
) -> ShapAttribution:
    """Attribute a score to groups of input features, replacing removed groups by background rows.

    This is for a scorer without a fusion mask. A coalition keeps the groups
    it marks and takes the other columns from each background row in turn.
    Its value is the mean score over the background rows (interventional
    SHAP). For a linear scorer ``w @ x`` the value of group g is
    ``w_g @ (x_g - mean(background)_g)``.

    Args:
        score_fn (callable): (n, n_features) array to n scores.
        x (numpy.ndarray): The feature vector explained, (n_features,).
        groups (dict of str to indices or slice): Columns of each group; the
            groups must not overlap. Columns in no group keep their value.
        background (numpy.ndarray): (n_background, n_features) reference rows.
        context (dict, optional): Identifiers stored in the result.

    Returns:
        ShapAttribution: One value per group; ``base_value`` is the mean score of the background.
    """
    x = np.asarray(x, dtype=float)
    background = np.atleast_2d(np.asarray(background, dtype=float))
    if x.ndim != 1:
        raise ValueError(f"explain_feature_vector: x must be one feature vector; got shape {x.shape}")
    if background.shape[1] != x.shape[0]:
        raise ValueError(f"explain_feature_vector: background has {background.shape[1]} columns; x has {x.shape[0]}")
    names = list(groups)
    columns = [np.arange(x.shape[0])[groups[name]] for name in names]
    seen = np.zeros(x.shape[0], dtype=int)
    for cols in columns:
        seen[cols] += 1
    if (seen > 1).any():
        raise ValueError(f"explain_feature_vector: column {int(np.flatnonzero(seen > 1)[0])} is in more than one group")
    n_background = background.shape[0]

    def value_fn(coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions) > 0.5
        rows = np.repeat(background[None, :, :], len(coalitions), axis=0)  # (n, B, F)
        rows[:, :, seen == 0] = x[seen == 0]
        for g, cols in enumerate(columns):
            keep = coalitions[:, g]
            rows[np.ix_(keep, np.arange(n_background), cols)] = x[cols]
        scores = np.asarray(score_fn(rows.reshape(-1, x.shape[0])), dtype=float).reshape(len(coalitions), n_background)
        return scores.mean(axis=1)

    values, base = _exact_shapley(value_fn, names, np.ones(len(names)))
    return ShapAttribution(
        features=names,
        values=values,
        base_value=base,
        output=float(np.asarray(score_fn(x[None, :]), dtype=float).ravel()[0]),
        data=np.ones(len(names)),
        kind="group",
        context=dict(context or {}),
    )


# ---------------------------------------------------------------------------- many explanations


def attribution_table(attributions: Sequence[ShapAttribution]) -> pd.DataFrame:
    """Return a tidy table: the context columns, feature, present, shap_value, base_value, output."""
    frames = []
    for attribution in attributions:
        frame = pd.DataFrame(
            {COL_FEATURE: attribution.features, COL_PRESENT: attribution.data.astype(bool), COL_SHAP: attribution.values}
        )
        for key, value in reversed(list(attribution.context.items())):
            frame.insert(0, key, value)
        frame[COL_BASE] = attribution.base_value
        frame[COL_OUTPUT] = attribution.output
        frames.append(frame)
    if not frames:
        raise ValueError("attribution_table: no attributions given")
    return pd.concat(frames, ignore_index=True)


def mean_attribution(attributions: Sequence[ShapAttribution]) -> pd.DataFrame:
    """Summarise many attributions per feature: mean SHAP value, mean |SHAP| and its share of the total.

    Returns:
        pandas.DataFrame: Index ``feature``; columns ``mean_shap``,
        ``mean_abs_shap``, ``share_abs`` (sums to 1), ``present_rate``;
        sorted by ``mean_abs_shap``.
    """
    table = attribution_table(attributions)
    summary = table.groupby(COL_FEATURE, sort=False).agg(
        mean_shap=(COL_SHAP, "mean"),
        mean_abs_shap=(COL_SHAP, lambda v: float(np.abs(v).mean())),
        present_rate=(COL_PRESENT, "mean"),
    )
    total = summary["mean_abs_shap"].sum()
    summary["share_abs"] = summary["mean_abs_shap"] / total if total > 0 else np.nan
    return summary[["mean_shap", "mean_abs_shap", "share_abs", "present_rate"]].sort_values("mean_abs_shap", ascending=False)


def stack_attributions(attributions: Sequence[ShapAttribution]):
    """Stack attributions over the same features into one ``shap.Explanation`` (for a beeswarm)."""
    import shap

    if not attributions:
        raise ValueError("stack_attributions: no attributions given")
    names = attributions[0].features
    different = [a.features for a in attributions if a.features != names]
    if different:
        raise ValueError(f"stack_attributions: features differ: {names} and {different[0]}")
    return shap.Explanation(
        values=np.vstack([a.values for a in attributions]),
        base_values=np.array([a.base_value for a in attributions]),
        data=np.vstack([a.data for a in attributions]),
        feature_names=list(names),
    )


def plot_attribution_waterfall(attribution: ShapAttribution, *, ax=None, max_display: int = 10):
    """Draw ``shap.plots.waterfall`` for one attribution on ``ax`` and return the Axes.

    ``shap.plots.waterfall`` draws on pyplot's current axes and resizes the
    figure; this makes ``ax`` current and restores the figure size afterwards.
    """
    import matplotlib.pyplot as plt
    import shap

    from vidrec_lab.viz import new_axes

    if ax is None:
        _, ax = new_axes()
    fig = ax.figure
    size = fig.get_size_inches().copy()
    plt.figure(fig.number)
    plt.sca(ax)
    shap.plots.waterfall(attribution.to_shap(), max_display=max_display, show=False)
    fig.set_size_inches(size)
    from vidrec_lab.privacy import export_id

    # Ids in the title go through export_id, so a pseudonymised run shows no raw user id.
    context = ", ".join(f"{k} {export_id(v) if k == COL_USER else v}" for k, v in attribution.context.items())
    if context:
        ax.set_title(context)
    return ax


def plot_attribution_summary(attributions: Sequence[ShapAttribution], *, ax=None, max_display: int = 10):
    """Draw a ``shap.plots.beeswarm`` of many attributions (one dot per explanation) and return the Axes.

    When some items lack a player, the colour is the player's presence (red:
    the item has it). When every item has every player, all dots are drawn
    in one colour without a colour bar, because the colour would carry nothing.
    """
    import shap

    from vidrec_lab.viz import PALETTE, new_axes

    if ax is None:
        _, ax = new_axes()
    stacked = stack_attributions(attributions)
    varies = bool(np.ptp(np.asarray(stacked.data), axis=0).max() > 0)
    colour = {"color_bar_label": "present"} if varies else {"color": PALETTE[0], "color_bar": False}
    shap.plots.beeswarm(stacked, max_display=max_display, ax=ax, show=False, plot_size=None, **colour)
    return ax


# ---------------------------------------------------------------------------- tokens (text classifier)


def explain_classifier_tokens(
    predict_proba: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    *,
    tokenizer,
    class_names: Sequence[str],
    max_evals: int = 300,
    batch_size: int = 64,
    mask_token: str | None = None,
):
    """Token-level SHAP of a text classifier's probabilities with ``shap``'s ``Text`` masker.

    The masker splits each text with the model's own (Hugging Face)
    tokenizer. It hides tokens by replacing them with ``mask_token`` (the
    tokenizer's ``[MASK]`` by default) before calling ``predict_proba``. The
    partition explainer groups neighbouring tokens hierarchically.

    Args:
        predict_proba (callable): List of texts to an (n, n_classes) probability array.
        texts (sequence of str): Texts to explain.
        tokenizer: The classifier's tokenizer (a fast tokenizer, for offsets).
        class_names (sequence of str): Column names of ``predict_proba``.
        max_evals (int): Model calls per text.
        batch_size (int): Texts per ``predict_proba`` call.
        mask_token (str, optional): Replacement for hidden tokens.

    Returns:
        shap.Explanation: ``values[i]`` is (tokens of text i, n_classes);
        ``data[i]`` contains the token strings.
    """
    import shap

    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("explain_classifier_tokens: no texts given")
    names = list(class_names)

    def model(batch) -> np.ndarray:
        probs = np.asarray(predict_proba([str(t) for t in batch]), dtype=float)
        if probs.ndim != 2 or probs.shape[1] != len(names):
            raise ValueError(
                f"explain_classifier_tokens: predict_proba returned shape {probs.shape}; expected (n, {len(names)})"
            )
        return probs

    masker = shap.maskers.Text(tokenizer, mask_token=mask_token)
    explainer = shap.explainers.Partition(model, masker, output_names=names)
    return explainer(texts, max_evals=max_evals, batch_size=batch_size, silent=True)


def token_attributions(explanation, label: str | int) -> pd.DataFrame:
    """Return token SHAP values for one class as a tidy table: text, position, token, special, shap_value.

    The tokenizer's special tokens (``[CLS]``, ``[SEP]``) appear with an
    empty ``token`` and ``special`` True. They are never masked, but the
    partition explainer can still assign them a small value, so they are
    kept: the values of a text plus its base value add up to the output.

    Args:
        explanation (shap.Explanation): Result of :func:`explain_classifier_tokens`.
        label (str or int): Class name (one of ``output_names``) or column index.
    """
    names = [str(n) for n in explanation.output_names] if explanation.output_names is not None else None
    if isinstance(label, str):
        if names is None or label not in names:
            raise ValueError(f"token_attributions: label {label!r} is not among the classes {names}")
        column = names.index(label)
    else:
        column = int(label)
    rows = []
    for i in range(len(explanation.values)):
        tokens = explanation.data[i]
        values = np.asarray(explanation.values[i])[:, column]
        for position, (token, value) in enumerate(zip(tokens, values)):
            token = str(token).strip()
            rows.append({"text": i, "position": position, COL_TOKEN: token, "special": token == "", COL_SHAP: float(value)})
    return pd.DataFrame(rows, columns=["text", "position", COL_TOKEN, "special", COL_SHAP])


def plot_token_attributions(explanation, *, index: int = 0, label: str | int, ax=None, max_tokens: int = 15):
    """Draw the token SHAP values of one text for one class as bars in text order and return the Axes."""
    from vidrec_lab.viz import PALETTE, new_axes

    if ax is None:
        _, ax = new_axes()
    table = token_attributions(explanation, label)
    table = table[(table["text"] == index) & ~table["special"]].head(max_tokens)
    labels = [f"{p}:{t}" for p, t in zip(table["position"], table[COL_TOKEN])]
    colors = [PALETTE[0] if v > 0 else PALETTE[3] for v in table[COL_SHAP]]
    ax.barh(labels[::-1], table[COL_SHAP].to_numpy()[::-1], color=colors[::-1])
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_xlabel(f"SHAP value on P({label})")
    ax.set_title(f"Tokens of text {index}")
    return ax
