"""Tests for vidrec_lab.features.behavior on small hand-computed tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from vidrec_lab.features.behavior import (
    interaction_matrix,
    item_vectors_from_interactions,
    user_profiles,
    user_sequences,
)
from vidrec_lab.tables import DataError, MissingColumnsError

DAY = 86_400


@pytest.fixture()
def interactions():
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2"],
            "item_id": ["i1", "i2", "i1", "i2", "i3"],
            "timestamp": [0, DAY, 2 * DAY, DAY, 3 * DAY],
            "event": ["view", "like", "favorite", "rating", "view"],
            "value": [0.5, 1.0, 1.0, 4.0, 1.0],
        }
    )


def dense(matrix):
    return matrix.toarray()


# ---------------------------------------------------------------------------- interaction_matrix


def test_matrix_default_weights(interactions):
    matrix, users, items = interaction_matrix(interactions)
    assert isinstance(matrix, sp.csr_matrix)
    assert list(users) == ["u1", "u2"]
    assert list(items) == ["i1", "i2", "i3"]
    # u1/i1: view at watch ratio 0.5 (0.5) + favourite (3); u2/i2: rating 4 counts 4.
    np.testing.assert_allclose(dense(matrix), [[3.5, 2.0, 0.0], [0.0, 4.0, 1.0]])


def test_matrix_without_values(interactions):
    matrix, _, _ = interaction_matrix(interactions, use_value=())
    np.testing.assert_allclose(dense(matrix), [[4.0, 2.0, 0.0], [0.0, 1.0, 1.0]])


def test_matrix_custom_weights(interactions):
    weights = {"view": 0.0, "like": 1.0, "favorite": 1.0, "rating": 0.5}
    matrix, _, _ = interaction_matrix(interactions, weights=weights)
    np.testing.assert_allclose(dense(matrix), [[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    assert matrix.nnz == 3  # zero cells are not stored


@pytest.mark.parametrize("threshold, expected", [(4.0, 1.0), (4.5, 0.0)])
def test_matrix_binarised_ratings(interactions, threshold, expected):
    matrix, _, _ = interaction_matrix(interactions, rating_threshold=threshold)
    assert dense(matrix)[1, 1] == expected
    assert dense(matrix)[0, 0] == 3.5


def test_matrix_time_decay(interactions):
    matrix, _, _ = interaction_matrix(interactions, time_decay_half_life=1.0)
    # now = 3 days; ages 3, 2, 1, 2, 0 days -> factors 1/8, 1/4, 1/2, 1/4, 1.
    np.testing.assert_allclose(dense(matrix), [[0.5 / 8 + 3 / 2, 2 / 4, 0.0], [0.0, 4 / 4, 1.0]])


def test_matrix_time_decay_explicit_now(interactions):
    matrix, _, _ = interaction_matrix(interactions, time_decay_half_life=2.0, now=5 * DAY)
    # ages 5, 4, 3, 4, 2 days at half-life 2.
    expected = [[0.5 * 2**-2.5 + 3 * 2**-1.5, 2 * 2**-2.0, 0.0], [0.0, 4 * 2**-2.0, 1 * 2**-1.0]]
    np.testing.assert_allclose(dense(matrix), expected)


def test_matrix_rows_after_now_not_boosted(interactions):
    matrix, _, _ = interaction_matrix(interactions, time_decay_half_life=1.0, now=0)
    np.testing.assert_allclose(dense(matrix), [[3.5, 2.0, 0.0], [0.0, 4.0, 1.0]])


def test_matrix_given_order_and_catalogue(interactions):
    items = pd.DataFrame({"item_id": ["i3", "i4", "i2", "i1"]})
    matrix, users, item_index = interaction_matrix(interactions, users=["u2", "u1", "u9"], items=items)
    assert list(users) == ["u2", "u1", "u9"]
    assert list(item_index) == ["i3", "i4", "i2", "i1"]
    np.testing.assert_allclose(dense(matrix), [[1.0, 0.0, 4.0, 0.0], [0.0, 0.0, 2.0, 3.5], [0, 0, 0, 0]])


def test_matrix_numeric_ids_become_strings():
    table = pd.DataFrame(
        {"user_id": [1, 2], "item_id": [10, 10], "timestamp": [0, 1], "event": ["view", "view"], "value": [1.0, 1.0]}
    )
    matrix, users, items = interaction_matrix(table, items=["10", "11"])
    assert list(users) == ["1", "2"]
    assert matrix.shape == (2, 2)


def test_matrix_unknown_item_raises(interactions):
    with pytest.raises(DataError, match=r"item_id 'i3' at row 4 is not in the given item_id list"):
        interaction_matrix(interactions, items=["i1", "i2"])


def test_matrix_unknown_event_raises(interactions):
    table = interactions.assign(event=["view", "share", "favorite", "rating", "share"])
    with pytest.raises(DataError, match=r"\{'share': 2\}.*have no weight"):
        interaction_matrix(table)


def test_matrix_missing_column_raises(interactions):
    with pytest.raises(MissingColumnsError, match=r"missing column\(s\) \['event'\]"):
        interaction_matrix(interactions.drop(columns=["event"]))


def test_matrix_bad_value_raises_where_used(interactions):
    table = interactions.assign(value=[np.nan, np.nan, 1.0, 4.0, 1.0])
    with pytest.raises(DataError, match=r"column 'value' at row 0 is nan"):
        interaction_matrix(table)
    # Row 1 is a like, whose value is not used: it may be missing.
    table = interactions.assign(value=[0.5, np.nan, 1.0, 4.0, 1.0])
    matrix, _, _ = interaction_matrix(table)
    assert dense(matrix)[0, 1] == 2.0


def test_matrix_negative_weight_raises(interactions):
    with pytest.raises(ValueError, match=r"weights\['like'\] must be a finite number >= 0; got -1"):
        interaction_matrix(interactions, weights={"view": 1, "like": -1, "favorite": 1, "rating": 1})


def test_matrix_bad_half_life_raises(interactions):
    with pytest.raises(ValueError, match="time_decay_half_life must be a positive number of days; got 0"):
        interaction_matrix(interactions, time_decay_half_life=0)


def test_matrix_duplicate_given_ids_raise(interactions):
    with pytest.raises(DataError, match="user_id 'u1' is listed more than once"):
        interaction_matrix(interactions, users=["u1", "u2", "u1"])


# ---------------------------------------------------------------------------- user_sequences


def test_sequences_time_order_with_ties():
    table = pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u1", "u1", "u1"],
            "item_id": ["x", "c", "b", "a", "c"],
            "timestamp": [5, 30, 10, 10, 5],
            "event": ["view"] * 5,
            "value": [1.0] * 5,
        }
    )
    # u1: c at 5, then a and b tied at 10 (a first by id), then c again at 30.
    assert user_sequences(table) == {"u1": ["c", "a", "b", "c"], "u2": ["x"]}


def test_sequences_numeric_ids_sort_numerically():
    table = pd.DataFrame(
        {"user_id": ["10", "9", "9"], "item_id": ["10", "9", "100"], "timestamp": [1, 1, 1], "event": ["view"] * 3, "value": [1.0] * 3}
    )
    sequences = user_sequences(table)
    assert list(sequences) == ["9", "10"]
    assert sequences["9"] == ["9", "100"]


def test_matrix_numeric_ids_sort_numerically():
    table = pd.DataFrame(
        {"user_id": ["10", "9", "2"], "item_id": ["100", "20", "3"], "timestamp": [0, 1, 2], "event": ["view"] * 3, "value": [1.0] * 3}
    )
    _, users, items = interaction_matrix(table)
    assert list(users) == ["2", "9", "10"]
    assert list(items) == ["3", "20", "100"]


def test_sequences_max_len_keeps_latest(interactions):
    assert user_sequences(interactions, max_len=2) == {"u1": ["i2", "i1"], "u2": ["i2", "i3"]}
    assert user_sequences(interactions, max_len=1) == {"u1": ["i1"], "u2": ["i3"]}


def test_sequences_event_filter(interactions):
    assert user_sequences(interactions, events=["view"]) == {"u1": ["i1"], "u2": ["i3"]}


def test_sequences_chinese_ids():
    table = pd.DataFrame(
        {"user_id": ["用户"] * 2, "item_id": ["视频2", "视频1"], "timestamp": [2, 1], "event": ["view"] * 2, "value": [1.0] * 2}
    )
    assert user_sequences(table) == {"用户": ["视频1", "视频2"]}


def test_sequences_empty_table():
    table = pd.DataFrame(columns=["user_id", "item_id", "timestamp", "event", "value"])
    assert user_sequences(table) == {}


def test_sequences_bad_max_len_raises(interactions):
    with pytest.raises(ValueError, match="max_len must be a positive integer or None; got 0"):
        user_sequences(interactions, max_len=0)


def test_sequences_bad_timestamp_raises(interactions):
    table = interactions.assign(timestamp=[0, "yesterday", 2, 3, 4])
    with pytest.raises(DataError, match="column 'timestamp' at row 1 is 'yesterday'"):
        user_sequences(table)


# ---------------------------------------------------------------------------- user_profiles


def test_profiles_weighted_mean_normalised(interactions):
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    user_ids, profiles = user_profiles(interactions, ["i1", "i2", "i3"], vectors)
    assert list(user_ids) == ["u1", "u2"]
    # u1: (3.5 * i1 + 2 * i2) / 5.5; u2: (4 * i2 + 1 * i3) / 5; then unit length.
    expected = np.array([[3.5, 2.0], [1.0, 5.0]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(profiles, expected, rtol=1e-6)
    assert profiles.dtype == np.float32


def test_profiles_zero_weight_user_is_zero(interactions):
    vectors = np.eye(3)
    weights = {"view": 0.0, "like": 1.0, "favorite": 1.0, "rating": 1.0}
    user_ids, profiles = user_profiles(
        interactions, ["i1", "i2", "i3"], vectors, users=["u1", "u2", "u3"], weights=weights, rating_threshold=5
    )
    assert list(user_ids) == ["u1", "u2", "u3"]
    np.testing.assert_allclose(profiles[0], np.array([1.0, 1.0, 0.0]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_array_equal(profiles[1], 0.0)  # only a view (weight 0) and a rating below 5
    np.testing.assert_array_equal(profiles[2], 0.0)  # no history


def test_profiles_time_decay_shifts_towards_recent(interactions):
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _, plain = user_profiles(interactions, ["i1", "i2", "i3"], vectors)
    _, decayed = user_profiles(interactions, ["i1", "i2", "i3"], vectors, time_decay_half_life=1.0)
    # u1 with decay: i1 weight 1.5625, i2 weight 0.5.
    expected = np.array([1.5625, 0.5]) / np.linalg.norm([1.5625, 0.5])
    np.testing.assert_allclose(decayed[0], expected, rtol=1e-6)
    assert not np.allclose(plain[0], decayed[0])


def test_profiles_vector_shape_mismatch_raises(interactions):
    with pytest.raises(ValueError, match=r"shape \(len\(item_ids\), dim\) = \(3, dim\); got \(2, 4\)"):
        user_profiles(interactions, ["i1", "i2", "i3"], np.zeros((2, 4)))


def test_profiles_item_without_vector_raises(interactions):
    with pytest.raises(DataError, match="item_id 'i3'"):
        user_profiles(interactions, ["i1", "i2"], np.eye(2))


# ---------------------------------------------------------------------------- item_vectors_from_interactions


def block_matrix():
    # Users 0-1 use items 0-1, users 2-3 use items 2-3, and no user has item 4.
    return sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0],
                [2, 2, 0, 0, 0],
                [0, 0, 1, 1, 0],
                [0, 0, 3, 3, 0],
            ],
            dtype=float,
        )
    )


def test_svd_vectors_group_co_used_items():
    vectors = item_vectors_from_interactions(block_matrix(), dim=2, seed=0)
    assert vectors.shape == (5, 2)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0] @ vectors[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[2] @ vectors[3], 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[0] @ vectors[2], 0.0, atol=1e-6)
    np.testing.assert_array_equal(vectors[4], 0.0)


def test_svd_vectors_match_exact_svd():
    rng = np.random.default_rng(3)
    dense_matrix = rng.integers(0, 3, size=(8, 5)).astype(float)
    vectors = item_vectors_from_interactions(sp.csr_matrix(dense_matrix), dim=5, seed=1, normalize=False)
    # Full rank: X Xᵀ = V S Vᵀ, independent of the signs SVD picks.
    _, singular, vt = np.linalg.svd(dense_matrix, full_matrices=False)
    np.testing.assert_allclose(vectors @ vectors.T, vt.T @ np.diag(singular) @ vt, atol=1e-4)


def test_svd_vectors_seeded():
    rng = np.random.default_rng(0)
    matrix = sp.random(30, 20, density=0.3, random_state=rng, format="csr")
    first = item_vectors_from_interactions(matrix, dim=4, seed=7)
    second = item_vectors_from_interactions(matrix, dim=4, seed=7)
    np.testing.assert_array_equal(first, second)


def test_svd_vectors_accept_interaction_matrix(interactions):
    matrix, _, items = interaction_matrix(interactions)
    vectors = item_vectors_from_interactions(matrix, dim=2)
    assert vectors.shape == (len(items), 2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("dim", [0, 5, 2.5])
def test_svd_bad_dim_raises(dim):
    with pytest.raises(ValueError, match=r"dim must be an integer from 1 to min\(users, items\) = 4"):
        item_vectors_from_interactions(block_matrix(), dim=dim)
