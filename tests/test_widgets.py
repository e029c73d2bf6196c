"""Tests for vidrec_lab.widgets: the explorer's state object and its widget bindings, without a browser."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from explain_toys import BagOfWordsEncoder, topic_catalog, vocabulary, weighted_fusion
from vidrec_lab.constants import COL_ITEM, COL_TITLE, COL_USER
from vidrec_lab.explain.scorer import FusedContentRecommender
from vidrec_lab.tables import DataError
from vidrec_lab.widgets import ExplorerPanel, ExplorerState, explanation_figure


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def toy():
    items, interactions, features, _, user_topic = topic_catalog(chinese=True)
    encoder = BagOfWordsEncoder(vocabulary())
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    features = {"text": encoder.encode(texts.tolist()), "signal": features["signal"]}
    model = FusedContentRecommender(
        weighted_fusion({"text": encoder.dimension, "signal": 3}), features, item_ids=items[COL_ITEM].tolist(),
        item_texts=texts, text_encoder=encoder, background_size=10,
    ).fit(interactions, items)
    return model, items, interactions


def test_state_history_and_recommendations(toy):
    model, items, interactions = toy
    state = ExplorerState(model, items, interactions, k=4, n_history=3, lime_samples=100)
    assert state.users[:3] == ["u00", "u01", "u02"]
    history = state.select_user("u10")
    expected = interactions[interactions[COL_USER] == "u10"].sort_values("timestamp", ascending=False).head(3)
    assert history[COL_ITEM].tolist() == expected[COL_ITEM].tolist()
    assert history[COL_TITLE].iloc[0] == items.set_index(COL_ITEM).loc[expected[COL_ITEM].iloc[0], COL_TITLE]
    assert history[COL_TITLE].iloc[0].startswith("爱情")
    recs = state.recommendations()
    direct = model.recommend(["u10"], k=4, history=interactions)
    assert recs[COL_ITEM].tolist() == direct[COL_ITEM].tolist()
    assert recs.columns.tolist() == ["rank", "item_id", "title", "score"]


def test_state_k_and_weights_change_the_list(toy):
    model, items, interactions = toy
    state = ExplorerState(model, items, interactions, k=3)
    state.select_user("u00")
    assert len(state.set_k(6)) == 6
    before = state.recommendations()["score"].to_numpy().copy()
    after = state.set_weight("signal", 0.05)
    assert state.weights == {"text": 0.5, "signal": 0.05}  # starts at the model's normalised weights
    assert model.fusion_weights == pytest.approx({"text": 0.5 / 0.55, "signal": 0.05 / 0.55})
    assert not np.allclose(after["score"].to_numpy(), before)
    np.testing.assert_allclose(after["score"].to_numpy(), model.recommend(["u00"], k=6, history=interactions)["score"].to_numpy())


def test_state_select_item_explains_both_ways(toy):
    model, items, interactions = toy
    state = ExplorerState(model, items, interactions, k=3, lime_samples=100)
    state.select_user("u20")
    item = state.recommendations()[COL_ITEM].iloc[0]
    explanation = state.select_item(item)
    assert explanation.lime.context == {"user_id": "u20", "item_id": item}
    assert explanation.shap.features == ["text", "signal"]
    assert explanation.shap.output == pytest.approx(state.recommendations()["score"].iloc[0], abs=1e-6)
    assert {"犯", "罪"} <= set(explanation.lime.weights["word"])
    assert state.select_item(item) is explanation  # cached until user or weights change
    fig = explanation_figure(explanation)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("LIME: words of")
    assert titles[1] == "SHAP: modalities of the score"  # shap's waterfall adds twin axes after these
    matplotlib.pyplot.close(fig)


def test_state_errors(toy):
    model, items, interactions = toy
    state = ExplorerState(model, items, interactions)
    with pytest.raises(KeyError, match="user 'nobody' is not in the history table"):
        state.select_user("nobody")
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        state.set_k(0)
    with pytest.raises(KeyError, match=r"unknown modality 'audio'; expected one of \['text', 'signal'\]"):
        state.set_weight("audio", 0.5)
    with pytest.raises(ValueError, match="weight of 'text' must be a positive number; got -1.0"):
        state.set_weight("text", -1)
    with pytest.raises(KeyError, match="item 'zzz' is not in the item table"):
        state.select_item("zzz")
    with pytest.raises(DataError, match="ExplorerState: the history table has no users"):
        ExplorerState(model, items, interactions.head(0))


def test_search_users(toy):
    model, items, interactions = toy
    state = ExplorerState(model, items, interactions)
    assert state.search_users("2") == ["u02", "u12", "u20", "u21", "u22"]
    assert state.search_users("", limit=2) == ["u00", "u01"]


def test_panel_binds_controls(toy):
    model, items, interactions = toy
    panel = ExplorerPanel(ExplorerState(model, items, interactions, k=3, lime_samples=100))
    assert "u00" in panel.user_box.options
    panel.user_box.value = "u11"
    assert panel.state.user == "u11"
    first_item = panel.state.recommendations()[COL_ITEM].iloc[0]
    assert html_has(panel.recs_html.value, first_item)
    assert len(panel.item_picker.options) == 3
    panel.k_slider.value = 5
    assert len(panel.item_picker.options) == 5
    panel.weight_sliders["signal"].value = 0.2
    assert panel.state.weights["signal"] == pytest.approx(0.2)
    panel.item_picker.value = first_item
    assert panel.figure.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "score" in panel.status.value
    assert "<table" in panel.lime_html.value
    panel.k_slider.value = 4  # a new list clears the old explanation
    assert panel.figure.value == b""
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_panel_lists_pseudonyms_when_pseudonymisation_is_on(toy, monkeypatch):
    from vidrec_lab import privacy

    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "1")
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", "widget-test-key-0123456789")
    model, items, interactions = toy
    panel = ExplorerPanel(ExplorerState(model, items, interactions, k=3, lime_samples=100))
    key = privacy.load_key()
    label = privacy.pseudonymize_id("u11", key)
    assert label.startswith("u_")
    assert label in panel.user_box.options
    assert not any(option in panel.state.users for option in panel.user_box.options)
    assert panel.user_box.value == privacy.pseudonymize_id("u00", key)
    panel.user_box.value = label
    assert panel.state.user == "u11"


def html_has(markup: str, text: str) -> bool:
    return f">{text}<" in markup
