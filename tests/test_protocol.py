import logging
import math

import numpy as np
import pandas as pd
import pytest

from vidrec_lab.evaluation.protocol import EvaluationResult, IncomparableResultsError, evaluate
from vidrec_lab.models.baselines import EASE, MostPopular
from vidrec_lab.recommend import Recommender
from vidrec_lab.splits import LeakageError, Split, leave_last_out
from vidrec_lab.tables import DataError

ITEMS = [f"i{n}" for n in range(1, 7)]
LOG2_3 = math.log2(3)


class CatalogOrder(Recommender):
    """Scores items by catalog position (i1 best), the same for every user; counts its calls."""

    name = "CatalogOrder"
    scores_cold_items = True

    def _fit(self, train):
        self.calls_ = 0

    def _score_matrix(self, user_ids, history):
        self.calls_ += 1
        scores = np.arange(len(self.item_ids_), 0, -1, dtype=np.float32)
        return np.tile(scores, (len(user_ids), 1))


def _table(pairs):
    rows = [(u, i, 100 * n + t, "view", 1.0) for n, (u, items) in enumerate(pairs.items()) for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "value"])


def _split(test=None, kind="random_holdout", cold_items=()):
    train = _table({"u1": ["i1"], "u2": ["i2"], "u3": ["i4", "i1"], "u4": ["i3"]})
    valid = _table({"u1": ["i2"], "u2": ["i3"], "u3": ["i5"], "u4": ["i4"]})
    test = test if test is not None else _table({"u1": ["i3"], "u2": ["i5", "i6"], "u3": ["i2"], "u4": ["i6"]})
    return Split(train=train, valid=valid, test=test, kind=kind, params={"seed": 0}, item_ids=list(ITEMS), cold_items=list(cold_items))


@pytest.fixture
def split():
    return _split()


@pytest.fixture
def model(split):
    return CatalogOrder().fit(split.train, items=pd.DataFrame({"item_id": ITEMS}))


def _value(result, metric, k, model="CatalogOrder"):
    table = result.table
    return table.loc[(table.model == model) & (table.metric == metric) & (table.k == k), "value"].item()


def test_full_ranking_exact_values(split, model):
    # Seen = train + valid. Rankings (target ranks): u1 i3 i4 i5 i6 (1); u2 i1 i4 i5 i6 (3, 4);
    # u3 i2 i3 i6 (1); u4 i1 i2 i5 i6 (4).
    result = evaluate({"CatalogOrder": model}, split, ks=(1, 3), n_bootstrap=0)
    assert _value(result, "recall", 3) == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert _value(result, "precision", 3) == pytest.approx((1 / 3 + 1 / 3 + 1 / 3 + 0) / 4)
    assert _value(result, "ndcg", 3) == pytest.approx((1 + 0.5 / (1 + 1 / LOG2_3) + 1 + 0) / 4)
    assert _value(result, "mrr", 3) == pytest.approx((1 + 1 / 3 + 1 + 0) / 4)
    assert _value(result, "map", 3) == pytest.approx((1 + 1 / 6 + 1 + 0) / 4)
    assert _value(result, "hit_rate", 3) == pytest.approx(0.75)
    assert _value(result, "recall", 1) == pytest.approx(0.5)
    assert set(result.table["mode"]) == {"full"}
    assert set(result.table["n_users"]) == {4}
    per_user = result.per_user.query("metric == 'recall' and k == 3").set_index("user_id")["value"]
    assert per_user.to_dict() == pytest.approx({"u1": 1.0, "u2": 0.5, "u3": 1.0, "u4": 0.0})


def test_valid_stage_uses_train_history(split, model):
    # History = train only; targets = valid. u1: i2 first; u2: i1 i3 (2); u3: i2 i3 i5 (3); u4: i1 i2 i4 (3).
    result = evaluate([model], split, ks=(1, 3), stage="valid", n_bootstrap=0, segments=False)
    assert _value(result, "mrr", 3) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 3) / 4)
    assert set(result.table["stage"]) == {"valid"}


def test_confidence_intervals_bracket_means(split, model):
    result = evaluate([model], split, ks=(3,), n_bootstrap=200, seed=3)
    table = result.table
    assert (table["ci_low"] <= table["value"] + 1e-12).all()
    assert (table["value"] <= table["ci_high"] + 1e-12).all()
    again = evaluate([model], split, ks=(3,), n_bootstrap=200, seed=3)
    pd.testing.assert_frame_equal(table, again.table)


def test_beyond_accuracy_per_model(split, model):
    vectors = {item: np.eye(6)[n] for n, item in enumerate(ITEMS)}
    result = evaluate([model], split, ks=(1, 3), n_bootstrap=0, item_vectors=vectors)
    beyond = result.beyond.set_index(["metric", "k"])["value"]
    # Top-1 items: u1 i3, u2 i1, u3 i2, u4 i1 -> 3 of 6 items.
    assert beyond[("coverage", 1)] == pytest.approx(0.5)
    assert beyond[("diversity", 3)] == pytest.approx(1.0)  # orthogonal vectors
    for metric in ("gini", "novelty", "popularity_recommended", "popularity_history", "popularity_ratio"):
        assert np.isfinite(beyond[(metric, 3)]), metric


def test_segments_by_activity_and_popularity(split, model):
    result = evaluate([model], split, ks=(3,), n_bootstrap=0)
    segments = result.segments.query("metric == 'recall' and k == 3").set_index(["segment_kind", "segment"])
    assert segments.loc[("user_activity", slice(None)), "n_users"].sum() == 4
    # History popularity: i1..i4 two users each, i5 one, i6 none (cold). Ordered by count then id,
    # the share of interactions before i1, i2, i3 is 0, 2/9, 4/9: head, head, mid; i5 is tail.
    assert segments.loc[("item_popularity", "head"), "value"] == pytest.approx(1.0)  # u3 -> i2 at rank 1
    assert segments.loc[("item_popularity", "mid"), "value"] == pytest.approx(1.0)  # u1 -> i3 at rank 1
    assert segments.loc[("item_popularity", "tail"), "value"] == pytest.approx(1.0)  # u2 -> i5 at rank 3
    assert segments.loc[("item_popularity", "cold"), "value"] == pytest.approx(0.0)  # i6 at rank 4 for u2, u4
    assert segments.loc[("item_popularity", "cold"), "n_users"] == 2


def test_sampled_mode_labelled_and_exact(split, model, caplog):
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.evaluation.protocol"):
        result = evaluate([model], split, ks=(3,), mode="sampled", n_negatives=100, n_bootstrap=0)
    assert set(result.table["mode"]) == {"sampled"}
    assert result.params["mode"] == "sampled"
    assert any("sampled evaluation" in record.getMessage() and "inflates" in record.getMessage() for record in caplog.records)
    # Every unseen non-target item is a negative. u2's targets i5 and i6 each rank 3 behind i1 and i4;
    # u4's target i6 ranks 4 behind i1, i2 and i5.
    assert _value(result, "recall", 3) == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert result.beyond.empty


def test_sampled_mode_is_seeded(split, model):
    first = evaluate([model], split, ks=(1, 3), mode="sampled", n_negatives=2, n_bootstrap=0, seed=11)
    second = evaluate([model], split, ks=(1, 3), mode="sampled", n_negatives=2, n_bootstrap=0, seed=11)
    pd.testing.assert_frame_equal(first.per_user, second.per_user)


def test_leakage_caught_before_running(model):
    leaky = _split(test=_table({"u1": ["i1"], "u2": ["i5"], "u3": ["i2"], "u4": ["i6"]}))  # (u1, i1) is in train
    calls_before = model.calls_
    with pytest.raises(LeakageError, match=r"test pair \(user 'u1', item 'i1'\) is also in train"):
        evaluate([model], leaky)
    assert model.calls_ == calls_before


def test_different_splits_not_comparable(split, model):
    first = evaluate([model], split, ks=(3,), n_bootstrap=0)
    same = evaluate([model], split, ks=(3,), n_bootstrap=0)
    joined = first.compare(same)
    assert (joined["difference"] == 0).all()
    other = _split(test=_table({"u1": ["i4"], "u2": ["i5"], "u3": ["i2"], "u4": ["i6"]}))
    second = evaluate([model], other, ks=(3,), n_bootstrap=0)
    with pytest.raises(IncomparableResultsError, match="different splits"):
        first.compare(second)
    sampled = evaluate([model], split, ks=(3,), mode="sampled", n_bootstrap=0)
    with pytest.raises(IncomparableResultsError, match=r"differ in mode \('full' and 'sampled'\)"):
        first.compare(sampled)


def test_cold_item_blind_model_still_reported():
    cold_split = _split(
        test=_table({"u1": ["i6"], "u2": ["i6"], "u3": ["i6"], "u4": ["i6"]}),
        kind="cold_start_items",
        cold_items=["i6"],
    )
    items = pd.DataFrame({"item_id": ITEMS})
    models = {"pop": MostPopular().fit(cold_split.train, items=items), "content": CatalogOrder().fit(cold_split.train, items=items)}
    result = evaluate(models, cold_split, ks=(1,), n_bootstrap=0)
    flags = result.table.groupby("model")["scores_cold_items"].first().to_dict()
    assert flags == {"pop": False, "content": True}
    # One cold candidate: both rank it first, so both hit; the table still lists the blind model.
    assert _value(result, "recall", 1, model="pop") == pytest.approx(1.0)
    assert set(result.segments["segment"].loc[result.segments["segment_kind"] == "item_popularity"]) == {"cold"}


def test_model_without_candidate_items_rejected(split):
    narrow = CatalogOrder().fit(split.train)  # catalog = training items only, no i5, i6
    with pytest.raises(DataError, match=r"'CatalogOrder' has no score column for 2 of the 6 candidate items, e\.g\. \['i5', 'i6'\]"):
        evaluate([narrow], split)


def test_invalid_options_rejected(split, model):
    with pytest.raises(ValueError, match=r"mode must be one of \['full', 'sampled'\]; got 'quick'"):
        evaluate([model], split, mode="quick")
    with pytest.raises(ValueError, match=r"metric must be one of .*; got 'auc'"):
        evaluate([model], split, metrics=("ndcg", "auc"))
    with pytest.raises(ValueError, match=r"every K in ks must be a positive integer; got 0"):
        evaluate([model], split, ks=(0, 5))
    with pytest.raises(ValueError, match=r"two recommenders are both named 'CatalogOrder'"):
        evaluate([model, model], split)


def test_result_json_round_trip(split, model, tmp_path):
    result = evaluate({"甲模型": model}, split, ks=(3,), n_bootstrap=50)
    path = result.to_json(tmp_path / "eval.json", include_per_user=True)
    loaded = EvaluationResult.from_json(path)
    assert loaded.split_fingerprint == split.fingerprint()
    assert loaded.params["mode"] == "full"
    pd.testing.assert_frame_equal(loaded.table, result.table, check_dtype=False)
    assert list(loaded.table["model"].unique()) == ["甲模型"]
    assert len(loaded.per_user) == len(result.per_user)
    loaded.check_comparable(result)
    saved = result.save("protocol_test", folder=tmp_path)
    assert saved == tmp_path / "protocol_test.json"
    with pytest.raises(ValueError, match=r"path must end in '\.json'"):
        result.to_json(tmp_path / "eval.txt")


def test_result_json_keeps_missing_intervals(split, model, tmp_path):
    result = evaluate([model], split, ks=(3,), n_bootstrap=0)
    loaded = EvaluationResult.from_json(result.to_json(tmp_path / "no_ci.json"))
    assert loaded.table["ci_low"].dtype == np.float64
    assert loaded.table["ci_low"].isna().all()
    assert loaded.per_user.empty
    with pytest.raises(DataError, match="no per-user values"):
        loaded.significance("ndcg", 3)


def test_synthetic_ranking_and_significance():
    from vidrec_lab.datasets import make_synthetic

    dataset = make_synthetic(n_users=80, n_items=60, n_topics=4, seed=2)
    split = leave_last_out(dataset.interactions, items=dataset.items)
    models = {
        "pop": MostPopular().fit(split.train, items=dataset.items),
        "ease": EASE(l2=50.0).fit(split.train, items=dataset.items),
    }
    result = evaluate(models, split, ks=(10,), n_bootstrap=100)
    assert result.pivot().shape == (2, 7)
    assert set(result.per_user["model"]) == {"pop", "ease"}
    assert result.per_user.groupby("model").size().to_dict() == {"ease": 7 * 80, "pop": 7 * 80}
    tests = result.significance("ndcg", 10, baseline="pop")
    assert list(tests["model_a"]) == ["ease"]
    assert tests["correction"].item() == "holm"
