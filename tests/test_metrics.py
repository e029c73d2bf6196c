import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from vidrec_lab.evaluation.metrics import (
    catalog_coverage,
    f1_at_k,
    gini_exposure,
    hit_rate_at_k,
    intra_list_diversity,
    item_probability,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    popularity_bias,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from vidrec_lab.recommend import Recommender
from vidrec_lab.tables import DataError

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)


def _recs(lists):
    """Build a recommendation table from {user: [item at rank 1, item at rank 2, ...]}."""
    rows = [(user, item, float(len(items) - r), r + 1) for user, items in lists.items() for r, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank"])


def _relevant(pairs):
    return pd.DataFrame([(u, i) for u, items in pairs.items() for i in items], columns=["user_id", "item_id"])


@pytest.fixture
def hand_case():
    recs = _recs(
        {
            "a": ["x1", "x2", "x3", "x4", "x5"],  # three relevant items, one never recommended
            "b": ["y0", "y1", "y2"],  # one relevant item: fewer than K
            "d": ["w1", "w2", "w3", "w4", "w5"],  # the relevant item is ranked beyond K = 3
            "e": ["v1"],  # no relevant items: not evaluated
        }
    )
    relevant = _relevant({"a": ["x2", "x4", "z"], "b": ["y1"], "c": ["w"], "d": ["w5"]})  # c has no list
    return recs, relevant


def test_metrics_at_3_hand_computed(hand_case):
    recs, relevant = hand_case
    idcg_3 = 1 + 1 / LOG2_3 + 0.5
    expected = {
        # user: (precision, recall, hit, mrr, ndcg, map, f1)
        "a": (1 / 3, 1 / 3, 1.0, 0.5, (1 / LOG2_3) / idcg_3, (1 / 2) / 3, 1 / 3),
        "b": (1 / 3, 1.0, 1.0, 0.5, 1 / LOG2_3, 0.5, 0.5),
        "c": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        "d": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    }
    functions = (precision_at_k, recall_at_k, hit_rate_at_k, mrr_at_k, ndcg_at_k, map_at_k, f1_at_k)
    for position, function in enumerate(functions):
        values = function(recs, relevant, 3, per_user=True)
        assert list(values.index) == ["a", "b", "c", "d"], function.__name__
        for user, row in expected.items():
            assert values[user] == pytest.approx(row[position]), (function.__name__, user)
        assert function(recs, relevant, 3) == pytest.approx(np.mean([row[position] for row in expected.values()]))


def test_metrics_at_5_hand_computed(hand_case):
    recs, relevant = hand_case
    idcg_3 = 1 + 1 / LOG2_3 + 0.5
    ndcg = ndcg_at_k(recs, relevant, 5, per_user=True)
    assert ndcg["a"] == pytest.approx((1 / LOG2_3 + 1 / LOG2_5) / idcg_3)
    assert ndcg["d"] == pytest.approx(1 / math.log2(6))
    assert map_at_k(recs, relevant, 5, per_user=True)["a"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert recall_at_k(recs, relevant, 5, per_user=True)["a"] == pytest.approx(2 / 3)
    assert precision_at_k(recs, relevant, 5, per_user=True)["b"] == pytest.approx(1 / 5)
    assert mrr_at_k(recs, relevant, 5, per_user=True)["d"] == pytest.approx(1 / 5)


def test_ranking_metrics_matches_single_functions(hand_case):
    recs, relevant = hand_case
    table = ranking_metrics(recs, relevant, ks=(3, 5))
    for metric, function in (("ndcg", ndcg_at_k), ("map", map_at_k), ("f1", f1_at_k), ("recall", recall_at_k)):
        for k in (3, 5):
            value = table.loc[(table.metric == metric) & (table.k == k), "value"].item()
            assert value == pytest.approx(function(recs, relevant, k))
    per_user = ranking_metrics(recs, relevant, ks=(3,), metrics=("mrr",), per_user=True)
    assert list(per_user.columns) == ["user_id", "metric", "k", "value"]
    assert len(per_user) == 4


def test_perfect_list_many_relevant():
    recs = _recs({"a": ["i1", "i2", "i3"]})
    relevant = _relevant({"a": ["i1", "i2", "i3", "i4", "i5"]})
    assert ndcg_at_k(recs, relevant, 3) == pytest.approx(1.0)
    assert map_at_k(recs, relevant, 3) == pytest.approx(1.0)
    # Standard recall keeps |relevant| in the denominator.
    assert recall_at_k(recs, relevant, 3) == pytest.approx(3 / 5)


def test_ranking_follows_rank_column_not_score():
    recs = _recs({"a": ["i1", "i2", "i3"]})
    recs["score"] = [0.0, 5.0, 9.0]  # scores disagree with ranks on purpose
    recs = recs.sample(frac=1.0, random_state=0)  # row order must not matter either
    relevant = _relevant({"a": ["i1"]})
    assert mrr_at_k(recs, relevant, 3) == pytest.approx(1.0)


def test_gaps_in_ranks_are_positions():
    recs = pd.DataFrame({"user_id": ["a"], "item_id": ["i9"], "rank": [4]})
    relevant = _relevant({"a": ["i9"]})
    assert mrr_at_k(recs, relevant, 5) == pytest.approx(0.25)
    assert hit_rate_at_k(recs, relevant, 3) == 0.0


class _ConstantScores(Recommender):
    """Every item gets the same score, so ranks come from the tie rule alone."""

    name = "Constant"

    def _fit(self, train):
        pass

    def _score_matrix(self, user_ids, history):
        return np.ones((len(user_ids), len(self.item_ids_)), dtype=np.float32)


def test_score_ties_ranked_by_catalog_order():
    items = pd.DataFrame({"item_id": ["c", "a", "b", "d"]})
    train = pd.DataFrame({"user_id": ["u"], "item_id": ["d"]})
    recs = _ConstantScores().fit(train, items=items).recommend(["u"], k=3)
    # recommend breaks the tie by catalog position: c, a, b (d is seen).
    assert list(recs["item_id"]) == ["c", "a", "b"]
    relevant = _relevant({"u": ["b"]})
    assert recall_at_k(recs, relevant, 2) == 0.0
    assert recall_at_k(recs, relevant, 3) == 1.0
    assert ndcg_at_k(recs, relevant, 3) == pytest.approx(0.5)


def test_ndcg_matches_sklearn_without_ties():
    rng = np.random.default_rng(7)
    n_users, n_items, k = 25, 40, 10
    scores = rng.random((n_users, n_items))  # continuous: no ties
    truth = (rng.random((n_users, n_items)) < 0.15).astype(int)
    truth[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1  # everyone has a relevant item
    users = [f"u{i:02d}" for i in range(n_users)]
    items = np.array([f"i{j:02d}" for j in range(n_items)])
    order = np.argsort(-scores, axis=1)
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(users, n_items),
            "item_id": items[order].ravel(),
            "rank": np.tile(np.arange(1, n_items + 1), n_users),
        }
    )
    rows, cols = np.nonzero(truth)
    relevant = pd.DataFrame({"user_id": np.asarray(users)[rows], "item_id": items[cols]})

    # Both take the ideal DCG from min(|relevant|, K) hits; without score ties the gains agree too.
    ours = ndcg_at_k(recs, relevant, k, per_user=True)
    theirs = [ndcg_score(truth[i : i + 1], scores[i : i + 1], k=k) for i in range(n_users)]
    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-10)
    assert ndcg_at_k(recs, relevant, k) == pytest.approx(ndcg_score(truth, scores, k=k))

    top = {u: set(items[order[i, :k]]) for i, u in enumerate(users)}
    rel = {u: set(items[truth[i] == 1]) for i, u in enumerate(users)}
    precision = precision_at_k(recs, relevant, k, per_user=True)
    recall = recall_at_k(recs, relevant, k, per_user=True)
    for u in users:
        assert precision[u] == pytest.approx(len(top[u] & rel[u]) / k)
        assert recall[u] == pytest.approx(len(top[u] & rel[u]) / len(rel[u]))


def test_ndcg_differs_from_sklearn_on_ties():
    # All four items tie. recommend-style ranks put the relevant item last, while
    # scikit-learn averages the gain over every order of the tied items.
    recs = _recs({"u": ["a", "b", "c", "d"]})
    relevant = _relevant({"u": ["d"]})
    ours = ndcg_at_k(recs, relevant, 4)
    theirs = ndcg_score([[0, 0, 0, 1]], [[1.0, 1.0, 1.0, 1.0]], k=4)
    assert ours == pytest.approx(1 / math.log2(5))
    assert theirs == pytest.approx(np.mean([1 / math.log2(r + 1) for r in range(1, 5)]))


def test_chinese_ids_pass_through():
    recs = _recs({"用户甲": ["美食视频", "萌宠视频"]})
    relevant = _relevant({"用户甲": ["萌宠视频"]})
    values = recall_at_k(recs, relevant, 2, per_user=True)
    assert list(values.index) == ["用户甲"]
    assert values["用户甲"] == 1.0


def test_missing_column_error_names_function():
    recs = _recs({"a": ["i1"]}).drop(columns="rank")
    with pytest.raises(DataError, match=r"ndcg_at_k\(recs\): missing column\(s\) \['rank'\]; found \['user_id', 'item_id', 'score'\]"):
        ndcg_at_k(recs, _relevant({"a": ["i1"]}), 5)


def test_unknown_metric_name_rejected():
    with pytest.raises(ValueError, match=r"metric must be one of \['precision', .*\]; got 'auc'"):
        ranking_metrics(_recs({"a": ["i1"]}), _relevant({"a": ["i1"]}), metrics=("ndcg", "auc"))


@pytest.mark.parametrize("rank", [0, 1.5, None])
def test_invalid_rank_rejected(rank):
    recs = pd.DataFrame({"user_id": ["a"], "item_id": ["i1"], "rank": [rank]})
    with pytest.raises(DataError, match=r"recall_at_k\(recs\): column 'rank' at row 0 .*expected an integer rank >= 1"):
        recall_at_k(recs, _relevant({"a": ["i1"]}), 5)


def test_duplicate_rank_rejected():
    recs = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i1", "i2"], "rank": [1, 1]})
    with pytest.raises(DataError, match=r"user 'a' has the same rank 1 twice"):
        recall_at_k(recs, _relevant({"a": ["i1"]}), 5)


def test_empty_relevance_rejected():
    with pytest.raises(DataError, match="relevance table has no rows"):
        recall_at_k(_recs({"a": ["i1"]}), _relevant({}), 5)


def test_bad_k_rejected():
    with pytest.raises(ValueError, match=r"precision_at_k: k must be a positive integer; got 0"):
        precision_at_k(_recs({"a": ["i1"]}), _relevant({"a": ["i1"]}), 0)


# --------------------------------------------------------------------------- beyond accuracy


def test_catalog_coverage_counts_distinct_items():
    recs = _recs({"u1": ["a", "b"], "u2": ["a", "c"]})
    assert catalog_coverage(recs, 10) == pytest.approx(0.3)
    assert catalog_coverage(recs, 10, k=1) == pytest.approx(0.1)
    with pytest.raises(DataError, match="3 distinct items but catalog_size is 2"):
        catalog_coverage(recs, 2)


def test_gini_exposure_hand_computed():
    catalog = ["a", "b", "c", "d"]
    # Counts a=3, b=1, c=0, d=0; sorted [0, 0, 1, 3]: sum((2i - n - 1) x_i) = 1*1 + 3*3 = 10; / (4 * 4).
    recs = _recs({"u1": ["a", "b"], "u2": ["a"], "u3": ["a"]})
    assert gini_exposure(recs, catalog) == pytest.approx(10 / 16)
    equal = _recs({"u1": ["a", "b"], "u2": ["c", "d"]})
    assert gini_exposure(equal, catalog) == pytest.approx(0.0)
    single = _recs({"u1": ["a"], "u2": ["a"]})
    assert gini_exposure(single, catalog) == pytest.approx(3 / 4)
    with pytest.raises(DataError, match=r"1 recommended items are not in item_ids, e.g. \['z'\]"):
        gini_exposure(_recs({"u1": ["z"]}), catalog)


def test_novelty_hand_computed():
    train = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u1"], "item_id": ["a", "a", "a", "b"]})
    probability = item_probability(train, ["a", "b", "c"])
    # U = 3: p = (users + 1) / 5.
    assert probability.to_dict() == pytest.approx({"a": 4 / 5, "b": 2 / 5, "c": 1 / 5})
    recs = _recs({"x": ["a", "b"], "y": ["c"]})
    per_user = novelty(recs, train, per_user=True)
    assert per_user["x"] == pytest.approx((-math.log2(0.8) - math.log2(0.4)) / 2)
    assert per_user["y"] == pytest.approx(LOG2_5)
    assert novelty(recs, train) == pytest.approx(per_user.mean())
    assert novelty(recs, probability) == pytest.approx(per_user.mean())
    with pytest.raises(DataError, match=r"1 recommended items have no probability, e.g. \['c'\]"):
        novelty(recs, probability.drop("c"))


def test_intra_list_diversity_hand_computed():
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "d": [2.0, 0.0]}
    recs = _recs({"u1": ["a", "b"], "u2": ["a", "c"], "u3": ["a", "b", "c"], "u4": ["a"], "u5": ["a", "d"]})
    values = intra_list_diversity(recs, vectors, per_user=True)
    half = 1 - 1 / math.sqrt(2)
    assert values["u1"] == pytest.approx(1.0)
    assert values["u2"] == pytest.approx(half)
    assert values["u3"] == pytest.approx((1 + 2 * half) / 3)
    assert math.isnan(values["u4"])  # one item, no pairs
    assert values["u5"] == pytest.approx(0.0, abs=1e-12)  # same direction
    expected = np.mean([1.0, half, (1 + 2 * half) / 3, 0.0])
    assert intra_list_diversity(recs, vectors) == pytest.approx(expected)
    ids, matrix = list(vectors), np.array(list(vectors.values()))
    assert intra_list_diversity(recs, (ids, matrix)) == pytest.approx(expected)
    assert math.isnan(intra_list_diversity(recs, vectors, k=1))  # no list has a pair at k = 1


def test_intra_list_diversity_rejects_bad_vectors():
    recs = _recs({"u1": ["a", "b"]})
    with pytest.raises(DataError, match=r"item 'b' has a zero vector"):
        intra_list_diversity(recs, {"a": [1.0, 0.0], "b": [0.0, 0.0]})
    with pytest.raises(DataError, match=r"1 recommended items have no vector, e.g. \['b'\]"):
        intra_list_diversity(recs, {"a": [1.0, 0.0]})


def test_popularity_bias_hand_computed():
    train = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3", "u3"], "item_id": ["a", "b", "a", "a", "c"]})
    recs = _recs({"u1": ["c", "d"], "u2": ["b"]})
    # Popularity: a = 1, b = c = 1/3, d = 0 (share of the 3 training users).
    per_user = popularity_bias(recs, train, per_user=True)
    assert per_user.loc["u1", "recommended"] == pytest.approx(1 / 6)
    assert per_user.loc["u1", "history"] == pytest.approx(2 / 3)
    assert per_user.loc["u2", "recommended"] == pytest.approx(1 / 3)
    assert per_user.loc["u2", "history"] == pytest.approx(1.0)
    summary = popularity_bias(recs, train)
    assert summary["recommended"] == pytest.approx(0.25)
    assert summary["history"] == pytest.approx(5 / 6)
    assert summary["ratio"] == pytest.approx(0.3)


def test_empty_recommendation_table_scores_zero():
    empty = pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    relevant = _relevant({"a": ["i1"], "b": ["i2"]})
    values = ndcg_at_k(empty, relevant, 5, per_user=True)
    assert values.to_dict() == {"a": 0.0, "b": 0.0}
    assert math.isnan(novelty(empty, pd.DataFrame({"user_id": ["a"], "item_id": ["i1"]})))


def test_duplicate_item_in_list_rejected():
    recs = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i1", "i1"], "rank": [1, 2]})
    with pytest.raises(DataError, match=r"user 'a' has the same item 'i1' twice"):
        map_at_k(recs, _relevant({"a": ["i1"]}), 5)
