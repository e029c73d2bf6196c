import numpy as np
import pandas as pd
import pytest

from vidrec_lab.models.baselines import EASE, ItemKNN, MostPopular, make_baselines
from vidrec_lab.recommend import topk_indices
from vidrec_lab.tables import MissingColumnsError


@pytest.fixture
def train():
    # Users a, b, c; items x, y, z, w. y is the most popular (3 users), then x (2).
    pairs = [("a", "x"), ("a", "y"), ("b", "y"), ("b", "z"), ("c", "y"), ("c", "x")]
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


@pytest.fixture
def catalog():
    return pd.DataFrame({"item_id": ["x", "y", "z", "w"]})


def test_most_popular_scores_and_excludes_seen(train, catalog):
    model = MostPopular().fit(train, catalog)
    np.testing.assert_array_equal(model.score(["a"]), [[2, 3, 1, 0]])
    recs = model.recommend(["a", "new"], k=2)
    assert recs.loc[recs.user_id == "a", "item_id"].tolist() == ["z", "w"]
    assert recs.loc[recs.user_id == "new", "item_id"].tolist() == ["y", "x"]
    assert recs.loc[recs.user_id == "a", "rank"].tolist() == [1, 2]


def test_itemknn_matches_hand_computed_cosine(train, catalog):
    model = ItemKNN(n_neighbors=None, shrink=0.0).fit(train, catalog)
    # x: users {a, c}; y: {a, b, c}; z: {b}. cos(x, y) = 2 / sqrt(2 * 3); cos(y, z) = 1 / sqrt(3); cos(x, z) = 0.
    sim = model.similarity_
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(6), rel=1e-6)
    assert sim[1, 2] == pytest.approx(1 / np.sqrt(3), rel=1e-6)
    assert sim[0, 2] == 0.0
    # User b has y and z: score(x) = cos(x, y) + cos(x, z).
    assert model.score(["b"])[0, 0] == pytest.approx(2 / np.sqrt(6), rel=1e-6)


def test_itemknn_keeps_top_neighbours(train, catalog):
    model = ItemKNN(n_neighbors=1, shrink=0.0).fit(train, catalog)
    assert (model.similarity_ > 0).sum(axis=0).max() <= 1


def test_ease_matches_closed_form(train, catalog):
    model = EASE(l2=1.0).fit(train, catalog)
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)
    p = np.linalg.inv(x.T @ x + np.eye(4))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights_, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score(["b"]), x[[1]] @ b, rtol=1e-5, atol=1e-6)


def test_recommend_with_extra_history_excludes_it(train, catalog):
    model = EASE(l2=1.0).fit(train, catalog)
    history = pd.concat([train, pd.DataFrame({"user_id": ["a"], "item_id": ["z"]})])
    recs = model.recommend(["a"], k=4, history=history)
    assert recs.item_id.tolist() == ["w"]


def test_recommend_restricts_to_candidates(train, catalog):
    model = MostPopular().fit(train, catalog)
    recs = model.recommend(["a", "b"], k=3, candidates=["w", "z"])
    assert set(recs.item_id) <= {"w", "z"}


def test_recommend_same_in_chunks(train, catalog):
    whole = EASE(l2=1.0).fit(train, catalog).recommend(["a", "b", "c"], k=2)
    chunked = EASE(l2=1.0, chunk_size=1).fit(train, catalog).recommend(["a", "b", "c"], k=2)
    pd.testing.assert_frame_equal(whole, chunked)


def test_topk_breaks_ties_by_index():
    scores = np.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(topk_indices(scores, 2), [[1, 2], [0, 1]])
    np.testing.assert_array_equal(topk_indices(scores, 10).shape, (2, 4))


def test_errors_name_problem(train, catalog):
    with pytest.raises(MissingColumnsError, match=r"EASE.fit\(train\): missing column\(s\) \['item_id'\]"):
        EASE().fit(train.rename(columns={"item_id": "movie"}))
    with pytest.raises(RuntimeError, match="not fitted"):
        EASE().recommend(["a"])
    with pytest.raises(ValueError, match="l2 must be positive; got 0"):
        EASE(l2=0)
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['SVD'\]"):
        make_baselines(SVD={})
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        MostPopular().fit(train, catalog).recommend(["a"], k=0)
