import numpy as np
import pandas as pd
import pytest

from vidrec_lab.splits import (
    LeakageError,
    Split,
    cold_start_items,
    global_temporal,
    leave_last_out,
    make_split,
    random_holdout,
)
from vidrec_lab.tables import validate_interactions


def _table(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "value"])
    return validate_interactions(frame)


@pytest.fixture
def ratings():
    # User a: items 1..5 in time order, with a timestamp tie between items 10 and 9 at t=5.
    rows = [("a", str(i), i, "rating", 4.0) for i in range(1, 5)]
    rows += [("a", "10", 5, "rating", 3.0), ("a", "9", 5, "rating", 5.0)]
    # User b: three items; user c: only two, so c stays in train.
    rows += [("b", "1", 10, "rating", 1.0), ("b", "2", 11, "rating", 2.0), ("b", "3", 12, "rating", 3.0)]
    rows += [("c", "1", 3, "rating", 5.0), ("c", "2", 4, "rating", 5.0)]
    return _table(rows)


def test_leave_last_out_holds_out_last_items(ratings):
    split = leave_last_out(ratings)
    test = dict(zip(split.test.user_id, split.test.item_id))
    valid = dict(zip(split.valid.user_id, split.valid.item_id))
    # Tie at t=5 is broken by numeric item id: 9 before 10, so 10 is last.
    assert test == {"a": "10", "b": "3"}
    assert valid == {"a": "9", "b": "2"}
    assert split.train_only_users == ["c"]
    assert set(split.train.loc[split.train.user_id == "c", "item_id"]) == {"1", "2"}


def test_leave_last_out_sizes_and_history(ratings):
    split = leave_last_out(ratings)
    sizes = split.sizes()
    assert sizes["train_rows"] == len(ratings) - 4
    assert sizes["test_rows"] == 2
    assert sizes["valid_rows"] == 2
    assert len(split.history("test")) == len(split.train) + len(split.valid)
    assert len(split.history("valid")) == len(split.train)


def test_leave_last_out_moves_all_events_of_item():
    rows = [
        ("u", "1", 1, "view", 0.9),
        ("u", "2", 2, "view", 0.8),
        ("u", "3", 3, "view", 1.0),
        ("u", "3", 4, "like", 1.0),
        ("u", "1", 5, "like", 1.0),  # a late like of an old item: would leak the future
    ]
    split = leave_last_out(_table(rows))
    assert split.test[["item_id", "event"]].values.tolist() == [["3", "view"], ["3", "like"]]
    assert split.dropped_future_rows == 1
    assert split.train["timestamp"].max() <= split.test["timestamp"].min()


def test_leave_last_out_rejects_small_min_items(ratings):
    with pytest.raises(ValueError, match="min_items must be at least 3"):
        leave_last_out(ratings, min_items=2)


def test_check_detects_leakage(ratings):
    split = leave_last_out(ratings)
    leaked = Split(
        train=pd.concat([split.train, split.test]),
        valid=split.valid,
        test=split.test,
        kind=split.kind,
        params=split.params,
        item_ids=split.item_ids,
    )
    with pytest.raises(LeakageError, match=r"test pair \(user 'a', item '10'\) is also in train"):
        leaked.check()


def test_check_detects_late_training_row(ratings):
    split = leave_last_out(ratings)
    late = split.train.copy()
    late.loc[late.user_id == "b", "timestamp"] = 99
    bad = Split(train=late, valid=split.valid, test=split.test, kind="leave_last_out", params={}, item_ids=split.item_ids)
    with pytest.raises(LeakageError, match="user 'b' has a training row at 99"):
        bad.check()


def test_global_temporal_cuts_by_time():
    rows = [(f"u{i % 3}", str(i), i, "view", 1.0) for i in range(20)]
    split = global_temporal(_table(rows), valid_fraction=0.1, test_fraction=0.2)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    assert len(split.test) == 4
    assert len(split.valid) == 2


def test_global_temporal_drops_repeated_pairs():
    rows = [("u", "1", 1, "view", 1.0), ("u", "2", 2, "view", 1.0), ("u", "1", 10, "view", 1.0)]
    split = global_temporal(_table(rows), valid_fraction=0.0, test_fraction=0.3)  # cut at t=10
    assert split.test.empty


def test_random_holdout_is_seeded_and_disjoint():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(i), int(rng.integers(0, 1000)), "view", 1.0) for u in range(20) for i in rng.choice(50, 10, replace=False)]
    table = _table(rows)
    first = random_holdout(table, seed=3)
    second = random_holdout(table, seed=3)
    other = random_holdout(table, seed=4)
    pd.testing.assert_frame_equal(first.test, second.test)
    assert not first.test.equals(other.test)
    assert first.test.groupby("user_id").size().min() >= 1
    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint() != other.fingerprint()


def test_cold_start_items_removes_items_from_train():
    rows = [(f"u{u}", str(i), u * 100 + i, "view", 1.0) for u in range(10) for i in range(20)]
    split = cold_start_items(_table(rows), fraction=0.2, min_item_interactions=5, seed=1)
    assert len(split.cold_items) == 4
    assert not split.train.item_id.isin(split.cold_items).any()
    assert set(split.test.item_id) == set(split.cold_items)
    assert split.candidate_items == split.cold_items
    again = cold_start_items(_table(rows), fraction=0.2, min_item_interactions=5, seed=1)
    assert again.cold_items == split.cold_items


def test_cold_start_items_needs_eligible_items():
    rows = [("u", str(i), i, "view", 1.0) for i in range(5)]
    with pytest.raises(Exception, match="no item can be made cold"):
        cold_start_items(_table(rows), fraction=0.1, min_item_interactions=5)


def test_make_split_rejects_unknown_kind(ratings):
    with pytest.raises(ValueError, match="split kind must be one of .* got 'weekly'"):
        make_split("weekly", ratings)
