"""An interactive explorer of recommendations and their explanations, for workshops.

The logic is in :class:`ExplorerState`, a plain object that tests drive
without a browser. It picks a user and shows their recent history, changes
the fusion weight of each modality and the list length K, and explains one
recommended item with LIME (words of its text) and SHAP (its modalities).
:class:`ExplorerPanel` only binds ipywidgets controls to that object and
renders its tables and figures. Display it as the last expression of a
JupyterLab cell.

Example::

    state = ExplorerState(model, dataset.items, split.history("test"))
    ExplorerPanel(state)
"""

from __future__ import annotations

import html
import io
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_EVENT, COL_ITEM, COL_TIMESTAMP, COL_TITLE, COL_USER, COL_VALUE
from vidrec_lab.recommend import COL_RANK, COL_SCORE
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)


@dataclass
class ItemExplanation:
    """LIME and SHAP explanations of one recommended item for one user.

    Attributes:
        user_id (str): The user.
        item_id (str): The item.
        title (str): The item's title.
        lime (TextExplanation): Word weights of the item text.
        shap (ShapAttribution): Modality attribution of the score.
    """

    user_id: str
    item_id: str
    title: str
    lime: object
    shap: object


class ExplorerState:
    """The explorer's content (history, top-K list, explanations), computed from the recommender.

    Args:
        recommender: A fitted :class:`~vidrec_lab.explain.scorer.FusedContentRecommender`
            (``recommend``, ``set_fusion_weights``, ``text_scorer``, ``coalition_scorer``).
        items (pandas.DataFrame): Item table (``item_id``, ``title``).
        history (pandas.DataFrame): Interactions shown as history, read by the
            model and excluded from the recommendations (e.g. ``split.history("test")``).
        k (int): Initial list length.
        n_history (int): Most recent history rows shown.
        lime_samples (int): LIME samples per explanation (fewer is faster).
        seed (int): Seed of the LIME perturbations.
        users (sequence of str, optional): Users offered; default every user in ``history``.
    """

    def __init__(
        self,
        recommender,
        items: pd.DataFrame,
        history: pd.DataFrame,
        *,
        k: int = 10,
        n_history: int = 8,
        lime_samples: int = 300,
        seed: int = 0,
        users: Sequence[str] | None = None,
    ) -> None:
        require_columns(items, [COL_ITEM, COL_TITLE], where="ExplorerState(items)")
        require_columns(history, [COL_USER, COL_ITEM, COL_TIMESTAMP], where="ExplorerState(history)")
        self.recommender = recommender
        self.titles = pd.Series(items[COL_TITLE].astype(str).to_numpy(), index=items[COL_ITEM].astype(str).to_numpy())
        self.history = history
        self.n_history = int(n_history)
        self.lime_samples = int(lime_samples)
        self.seed = int(seed)
        known = sorted(history[COL_USER].astype(str).unique(), key=_id_order)
        self.users = [str(u) for u in users] if users is not None else known
        if not self.users:
            raise DataError("ExplorerState: the history table has no users to explore")
        weights = getattr(recommender, "fusion_weights", None)
        self.weights: dict[str, float] = dict(weights) if weights else {}
        self.k = self._check_k(k)
        self.user = self.users[0]
        self._recommendations: pd.DataFrame | None = None
        self._explanations: dict[tuple, ItemExplanation] = {}

    # ---------------------------------------------------------------- controls

    def search_users(self, query: str, *, limit: int = 50) -> list[str]:
        """Return up to ``limit`` user ids that contain ``query`` (all users for an empty query)."""
        query = str(query).strip()
        found = [u for u in self.users if query in u] if query else list(self.users)
        return found[:limit]

    def select_user(self, user: str) -> pd.DataFrame:
        """Make ``user`` current and return their recent history (see :meth:`recent_history`)."""
        user = str(user)
        if user not in self.users:
            raise KeyError(f"ExplorerState: user {user!r} is not in the history table; search_users() lists the users")
        self.user = user
        self._recommendations = None
        return self.recent_history()

    def set_k(self, k: int) -> pd.DataFrame:
        """Set the list length and return the recommendations."""
        self.k = self._check_k(k)
        self._recommendations = None
        return self.recommendations()

    def set_weight(self, modality: str, value: float) -> pd.DataFrame:
        """Set one modality's fusion weight (the others keep theirs; all are renormalised) and return the recommendations."""
        if not self.weights:
            raise TypeError("ExplorerState: this recommender has no adjustable fusion weights")
        if modality not in self.weights:
            raise KeyError(f"ExplorerState: unknown modality {modality!r}; expected one of {list(self.weights)}")
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"ExplorerState: weight of {modality!r} must be a positive number; got {value!r}")
        self.weights = {**self.weights, modality: value}
        self.recommender.set_fusion_weights(self.weights)
        self._recommendations = None
        return self.recommendations()

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ExplorerState: k must be a positive integer; got {k!r}")
        return int(k)

    # ---------------------------------------------------------------- views

    def recent_history(self) -> pd.DataFrame:
        """Return the current user's ``n_history`` most recent interactions, newest first, with titles."""
        rows = self.history[self.history[COL_USER].astype(str) == self.user]
        rows = rows.sort_values(COL_TIMESTAMP, ascending=False, kind="mergesort").head(self.n_history)
        columns = [c for c in (COL_TIMESTAMP, COL_ITEM, COL_EVENT, COL_VALUE) if c in rows.columns]
        table = rows[columns].copy()
        table.insert(2, COL_TITLE, table[COL_ITEM].astype(str).map(self.titles))
        return table.reset_index(drop=True)

    def recommendations(self) -> pd.DataFrame:
        """Return the current user's top-K list: rank, item_id, title, score."""
        if self._recommendations is None:
            recs = self.recommender.recommend([self.user], k=self.k, history=self.history)
            recs = recs.assign(**{COL_TITLE: recs[COL_ITEM].astype(str).map(self.titles)})
            self._recommendations = recs[[COL_RANK, COL_ITEM, COL_TITLE, COL_SCORE]].reset_index(drop=True)
        return self._recommendations

    def select_item(self, item: str) -> ItemExplanation:
        """Explain the current user's score of ``item`` with LIME (item text) and SHAP (modalities)."""
        from vidrec_lab.explain.lime_text import explain_recommendation_text
        from vidrec_lab.explain.shap_fusion import explain_modalities

        item = str(item)
        if item not in self.titles.index:
            raise KeyError(f"ExplorerState: item {item!r} is not in the item table")
        key = (self.user, item, tuple(sorted(self.weights.items())))
        if key not in self._explanations:
            lime = explain_recommendation_text(
                self.recommender, self.user, item, history=self.history, num_samples=self.lime_samples, seed=self.seed
            )
            attribution = explain_modalities(self.recommender, self.user, item, history=self.history)
            self._explanations[key] = ItemExplanation(self.user, item, str(self.titles[item]), lime, attribution)
        return self._explanations[key]


def _id_order(value: str):
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def explanation_figure(explanation: ItemExplanation, *, max_words: int = 10):
    """Draw LIME word weights (left) and the SHAP modality waterfall (right) in one figure and return it."""
    from vidrec_lab.explain.lime_text import plot_word_weights
    from vidrec_lab.explain.shap_fusion import plot_attribution_waterfall
    from vidrec_lab.viz import PAGE_WIDTH_IN, new_axes

    fig, (left, right) = new_axes(ncols=2, width=PAGE_WIDTH_IN, aspect=0.7)
    plot_word_weights(explanation.lime, ax=left, max_words=max_words, title=f"LIME: words of “{explanation.title[:40]}”")
    plot_attribution_waterfall(explanation.shap, ax=right)
    right.set_title("SHAP: modalities of the score")
    return fig


def _html_table(table: pd.DataFrame, *, digits: int = 3) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", escape=True, border=0)


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


class ExplorerPanel:
    """ipywidgets controls bound to an :class:`ExplorerState`.

    Controls: a user search box (type part of an id), K and one weight
    slider per modality. Views: the user's recent history, the top-K list,
    a list to pick an item, and that item's LIME and SHAP figure. Every
    control calls one method of the state and redraws what it changed.

    Args:
        state (ExplorerState): The state to show and change.
        max_k (int): Upper end of the K slider.
    """

    def __init__(self, state: ExplorerState, *, max_k: int = 50) -> None:
        import ipywidgets as widgets

        from vidrec_lab.privacy import export_id

        self.state = state
        # The box lists what export_id shows (pseudonyms when pseudonymisation is on), and the state keeps raw ids.
        self._user_by_label = {export_id(user): user for user in state.users}
        self.user_box = widgets.Combobox(
            value=export_id(state.user), options=list(self._user_by_label), description="User",
            placeholder="type a user id", ensure_option=True,
        )
        self.k_slider = widgets.IntSlider(value=state.k, min=1, max=max(max_k, state.k), description="K")
        self.weight_sliders = {
            name: widgets.FloatSlider(value=round(value, 2), min=0.05, max=1.0, step=0.05, description=name, readout_format=".2f")
            for name, value in state.weights.items()
        }
        self.history_html = widgets.HTML()
        self.recs_html = widgets.HTML()
        self.item_picker = widgets.Select(description="Explain", rows=8, layout=widgets.Layout(width="95%"))
        self.status = widgets.HTML()
        self.figure = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.lime_html = widgets.HTML()

        self.user_box.observe(self._on_user, names="value")
        self.k_slider.observe(self._on_k, names="value")
        for name, slider in self.weight_sliders.items():
            slider.observe(lambda change, name=name: self._on_weight(name, change), names="value")
        self.item_picker.observe(self._on_item, names="value")

        controls = widgets.VBox([self.user_box, self.k_slider, widgets.HTML("<b>Fusion weights</b>"), *self.weight_sliders.values()])
        history = widgets.VBox([widgets.HTML("<b>Recent history</b>"), self.history_html])
        top = widgets.HBox([controls, history])
        lists = widgets.HBox([widgets.VBox([widgets.HTML("<b>Recommendations</b>"), self.recs_html]), self.item_picker])
        self.root = widgets.VBox([top, lists, self.status, self.figure, self.lime_html])
        self._refresh_history()
        self._refresh_recommendations()

    def _repr_mimebundle_(self, **kwargs):
        return self.root._repr_mimebundle_(**kwargs)

    # ---------------------------------------------------------------- callbacks

    def _on_user(self, change) -> None:
        if change["new"] not in self._user_by_label:
            return  # partial text while typing
        self.state.select_user(self._user_by_label[change["new"]])
        self._refresh_history()
        self._refresh_recommendations()

    def _on_k(self, change) -> None:
        self.state.set_k(int(change["new"]))
        self._refresh_recommendations()

    def _on_weight(self, name: str, change) -> None:
        self.state.set_weight(name, float(change["new"]))
        self._refresh_recommendations()

    def _on_item(self, change) -> None:
        if change["new"] is None:
            return
        self.status.value = f"Explaining item {html.escape(str(change['new']))} ..."
        explanation = self.state.select_item(change["new"])
        self.figure.value = _figure_png(explanation_figure(explanation))
        lime = explanation.lime
        self.status.value = (
            f"<b>{html.escape(explanation.title)}</b>: score {explanation.shap.output:.3f}; "
            f"LIME fit R² {lime.r2:.2f} over {lime.unique_texts} distinct texts"
        )
        self.lime_html.value = _html_table(lime.weights.head(10))

    # ---------------------------------------------------------------- redraws

    def _refresh_history(self) -> None:
        self.history_html.value = _html_table(self.state.recent_history())

    def _refresh_recommendations(self) -> None:
        recs = self.state.recommendations()
        self.recs_html.value = _html_table(recs)
        self.item_picker.options = [
            (f"{rank}. {title} ({score:.3f})", item)
            for rank, item, title, score in recs[[COL_RANK, COL_ITEM, COL_TITLE, COL_SCORE]].itertuples(index=False)
        ]
        self.item_picker.value = None
        # The shown explanation belongs to the previous list; clear it.
        self.figure.value = b""
        self.lime_html.value = ""
        self.status.value = "Pick an item to explain it."
