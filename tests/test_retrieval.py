import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from vidrec_lab.retrieval import (
    EmbeddingRetriever,
    FaissIndex,
    as_exclusion_matrix,
    exact_top_k,
    history_mean_vectors,
    popularity_counts,
)


def _brute_force(users, items, k, seen):
    """Top-k by a full Python sort per user, for comparison."""
    out = []
    for u, row in enumerate(users @ items.T):
        ranked = sorted((i for i in range(len(items)) if i not in seen[u]), key=lambda i: (-row[i], i))
        out.append(ranked[:k])
    return out


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(23, 8)).astype(np.float32), rng.normal(size=(57, 8)).astype(np.float32)


@pytest.fixture
def seen():
    rng = np.random.default_rng(1)
    return [sorted(rng.choice(57, size=rng.integers(0, 12), replace=False).tolist()) for _ in range(23)]


def test_exact_top_k_matches_brute_force(vectors, seen):
    users, items = vectors
    top = exact_top_k(users, items, 7, exclude=seen, chunk_size=5)
    expected = _brute_force(users, items, 7, seen)
    assert top.indices.tolist() == expected
    scores = users @ items.T
    for u in range(len(users)):
        np.testing.assert_allclose(top.scores[u], scores[u, expected[u]], rtol=1e-5)


def test_exact_top_k_accepts_sparse_exclusion(vectors, seen):
    users, items = vectors
    matrix = as_exclusion_matrix(seen, len(users), len(items))
    assert sp.issparse(matrix)
    from_lists = exact_top_k(users, items, 5, exclude=seen)
    from_matrix = exact_top_k(users, items, 5, exclude=matrix)
    np.testing.assert_array_equal(from_lists.indices, from_matrix.indices)


def test_exact_top_k_breaks_ties_by_index():
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 3.0]], dtype=np.float32)
    assert exact_top_k(users, items, 4).indices.tolist() == [[1, 2, 0, 3]]


def test_exact_top_k_pads_short_lists():
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.eye(2, dtype=np.float32)
    top = exact_top_k(users, items, 3, exclude=[[1]])
    assert top.indices.tolist() == [[0, -1, -1]]
    assert top.scores[0, 0] == pytest.approx(1.0)
    assert np.isneginf(top.scores[0, 1:]).all()


def test_exact_top_k_restricts_to_candidates(vectors):
    users, items = vectors
    top = exact_top_k(users, items, 3, candidates=[4, 9, 11, 30])
    assert set(top.indices.ravel().tolist()) <= {4, 9, 11, 30}
    scores = users @ items[[4, 9, 11, 30]].T
    best = np.array([4, 9, 11, 30])[np.argmax(scores, axis=1)]
    np.testing.assert_array_equal(top.indices[:, 0], best)


def test_exact_top_k_rejects_bad_input(vectors):
    users, items = vectors
    with pytest.raises(ValueError, match="user_vectors have dim 8 but item_vectors have dim 3"):
        exact_top_k(users, items[:, :3], 2)
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        exact_top_k(users, items, 0)
    with pytest.raises(ValueError, match=r"exclude contains invalid item index 57; expected indices in \[0, 57\)"):
        exact_top_k(users[:1], items, 2, exclude=[[57]])
    bad = items.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="item_vectors has a NaN or infinite value in row 4"):
        exact_top_k(users, bad, 2)


def test_faiss_flat_matches_exact(vectors, seen):
    pytest.importorskip("faiss", reason="faiss-cpu is optional")
    users, items = vectors
    exact = exact_top_k(users, items, 6, exclude=seen)
    index = FaissIndex(items)
    approx = index.search(users, 6, exclude=seen)
    np.testing.assert_array_equal(approx.indices, exact.indices)
    np.testing.assert_allclose(approx.scores, exact.scores, rtol=1e-4, atol=1e-5)
    with_candidates = index.search(users, 2, exclude=seen, candidates=[1, 2, 3, 40])
    np.testing.assert_array_equal(with_candidates.indices, exact_top_k(users, items, 2, exclude=seen, candidates=[1, 2, 3, 40]).indices)


def test_faiss_missing_raises_clear_error(vectors, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="needs the faiss-cpu package"):
        FaissIndex(vectors[1])


def test_history_mean_vectors_hand_computed():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    users = history_mean_vectors([[0, 1], [2], []], items, popularity=[3, 1, 0], normalize=False)
    np.testing.assert_allclose(users[0], [0.5, 0.5])
    np.testing.assert_allclose(users[1], [1.0, 1.0])
    # Empty history: popularity-weighted mean, (3 * [1, 0] + 1 * [0, 1]) / 4.
    np.testing.assert_allclose(users[2], [0.75, 0.25])
    plain = history_mean_vectors([[]], items, normalize=False)
    np.testing.assert_allclose(plain[0], [2 / 3, 2 / 3], rtol=1e-6)
    unit = history_mean_vectors([[0, 1]], items)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_empty_history_user_gets_popular_content_first():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)
    users = history_mean_vectors([[]], items, popularity=[10, 1, 0])
    assert exact_top_k(users, items, 3).indices.tolist() == [[0, 2, 1]]


def test_retriever_excludes_history_and_keeps_chinese_ids():
    items = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]], dtype=np.float32)
    retriever = EmbeddingRetriever(items, ["猫咪视频", "b", "c"])
    history = pd.DataFrame({"user_id": ["用户一"], "item_id": ["猫咪视频"]})
    recs = retriever.recommend(["用户一", "u2"], np.array([[1.0, 0.0], [1.0, 0.0]]), k=2, history=history)
    assert recs.loc[recs.user_id == "用户一", "item_id"].tolist() == ["b", "c"]
    assert recs.loc[recs.user_id == "u2", "item_id"].tolist() == ["猫咪视频", "b"]
    assert recs["rank"].tolist() == [1, 2, 1, 2]
    assert recs.loc[0, "score"] == pytest.approx(0.8)


def test_retriever_ranks_items_added_later():
    retriever = EmbeddingRetriever(np.eye(2, dtype=np.float32), ["a", "b"])
    retriever.add_items(["new"], np.array([[2.0, 0.0]], dtype=np.float32))
    recs = retriever.recommend(["u"], np.array([[1.0, 0.0]]), k=1)
    assert recs.item_id.tolist() == ["new"]
    only_new = retriever.recommend(["u"], np.array([[0.0, 1.0]]), k=3, candidates=["new"])
    assert only_new.item_id.tolist() == ["new"]
    with pytest.raises(Exception, match="'a' is already in the catalog"):
        retriever.add_items(["a"], np.ones((1, 2), dtype=np.float32))


def test_retriever_faiss_backend_matches_exact(vectors, seen):
    pytest.importorskip("faiss", reason="faiss-cpu is optional")
    users, items = vectors
    ids = [f"item{i}" for i in range(len(items))]
    history = pd.DataFrame([(f"u{u}", ids[i]) for u in range(len(users)) for i in seen[u]], columns=["user_id", "item_id"])
    user_ids = [f"u{u}" for u in range(len(users))]
    exact = EmbeddingRetriever(items, ids).recommend(user_ids, users, k=4, history=history)
    approx = EmbeddingRetriever(items, ids, backend="faiss").recommend(user_ids, users, k=4, history=history)
    pd.testing.assert_frame_equal(exact.drop(columns="score"), approx.drop(columns="score"))


def test_retriever_rejects_unknown_backend():
    with pytest.raises(ValueError, match=r"backend must be one of \['exact', 'faiss'\]; got 'annoy'"):
        EmbeddingRetriever(np.eye(2), ["a", "b"], backend="annoy")


def test_popularity_counts_counts_distinct_users():
    train = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["x", "x", "x", "y"]})
    np.testing.assert_array_equal(popularity_counts(train, ["y", "x", "z"]), [1, 2, 0])
