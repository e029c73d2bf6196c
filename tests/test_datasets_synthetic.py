"""Synthetic micro-video platform: determinism, ground truth and the behaviour it promises."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

from vidrec_lab.config import get_profile
from vidrec_lab.constants import (
    COL_EVENT,
    COL_GENRES,
    COL_ITEM,
    COL_TAGS,
    COL_TIMESTAMP,
    COL_TITLE,
    COL_USER,
    COL_VALUE,
    EVENT_FAVORITE,
    EVENT_LIKE,
    EVENT_VIEW,
)
from vidrec_lab.datasets import load_dataset, load_for_profile, make_synthetic, true_affinity
from vidrec_lab.datasets.synthetic import TOPICS
from vidrec_lab.tables import DataError, Dataset

_CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def platform() -> Dataset:
    return make_synthetic(n_users=200, n_items=300, n_topics=8, seed=3)


def _topics_of(dataset: Dataset, item_ids) -> np.ndarray:
    item_topic = dataset.info["ground_truth"]["item_topic"]
    return np.asarray([item_topic[i] for i in item_ids])


def test_same_seed_gives_identical_tables():
    first = make_synthetic(n_users=40, n_items=60, seed=11)
    second = make_synthetic(n_users=40, n_items=60, seed=11)
    pd.testing.assert_frame_equal(first.items, second.items)
    pd.testing.assert_frame_equal(first.users, second.users)
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    assert first.info == second.info
    assert first.fingerprint() == second.fingerprint()


def test_different_seed_gives_different_tables():
    first = make_synthetic(n_users=40, n_items=60, seed=11)
    second = make_synthetic(n_users=40, n_items=60, seed=12)
    assert first.fingerprint() != second.fingerprint()
    assert first.items[COL_TITLE].tolist() != second.items[COL_TITLE].tolist()


def test_smoke_size_is_fast():
    started = time.perf_counter()
    dataset = make_synthetic(n_users=60, n_items=80)
    assert time.perf_counter() - started < 1.0
    assert len(dataset.users) == 60
    assert len(dataset.items) == 80


def test_tables_and_ground_truth_shapes(platform):
    truth = platform.info["ground_truth"]
    assert truth["topics"] == [t[0] for t in TOPICS[:8]]
    assert len(truth["item_topic"]) == 300
    assert len(truth["user_preferences"]) == 200
    for preferences in truth["user_preferences"].values():
        assert len(preferences) == 8
        assert sum(preferences) == pytest.approx(1.0)
    # Topics share the catalog equally: 300 items over 8 topics is 37 or 38 each.
    counts = np.bincount(list(truth["item_topic"].values()), minlength=8)
    assert counts.min() == 37
    assert counts.max() == 38
    assert platform.users[COL_USER].tolist()[:3] == ["u000", "u001", "u002"]
    assert platform.items[COL_ITEM].tolist()[-1] == "v299"


def test_genres_and_tags_follow_topic(platform):
    truth = platform.info["ground_truth"]
    for item, genres, tags, language in zip(
        platform.items[COL_ITEM], platform.items[COL_GENRES], platform.items[COL_TAGS], platform.items["language"]
    ):
        name, name_zh, words_en, words_zh = TOPICS[truth["item_topic"][item]]
        assert genres == [name]
        vocabulary = set(words_zh) | {name_zh} if language == "zh" else set(words_en) | {name}
        assert set(tags) <= vocabulary
        assert len(tags) == len(set(tags))


def test_chinese_fraction_and_text(platform):
    items = platform.items
    chinese = items["language"] == "zh"
    assert 0.1 < chinese.mean() < 0.3
    for title, description, tags in items.loc[chinese, [COL_TITLE, "description", COL_TAGS]].itertuples(index=False):
        assert _CJK.search(title)
        assert _CJK.search(description)
        assert all(_CJK.search(tag) for tag in tags)
    for title in items.loc[~chinese, COL_TITLE]:
        assert not _CJK.search(title)
    none_chinese = make_synthetic(n_users=5, n_items=20, chinese_fraction=0.0, seed=1)
    assert (none_chinese.items["language"] == "en").all()


def test_events_and_values(platform):
    interactions = platform.interactions
    assert set(interactions[COL_EVENT]) == {EVENT_VIEW, EVENT_LIKE, EVENT_FAVORITE}
    views = interactions[interactions[COL_EVENT] == EVENT_VIEW]
    assert views[COL_VALUE].between(0.0, 1.0).all()
    assert (interactions.loc[interactions[COL_EVENT] != EVENT_VIEW, COL_VALUE] == 1.0).all()
    per_user = views.groupby(COL_USER).size()
    assert per_user.min() >= 10
    assert per_user.max() <= 40
    # Each user views an item at most once.
    assert not views.duplicated([COL_USER, COL_ITEM]).any()


def test_likes_only_on_well_watched_views(platform):
    interactions = platform.interactions
    views = interactions[interactions[COL_EVENT] == EVENT_VIEW].set_index([COL_USER, COL_ITEM])
    likes = interactions[interactions[COL_EVENT] == EVENT_LIKE]
    assert len(likes) > 0
    for user, item, timestamp in likes[[COL_USER, COL_ITEM, COL_TIMESTAMP]].itertuples(index=False):
        view = views.loc[(user, item)]
        assert view[COL_VALUE] >= 0.7
        assert view[COL_TIMESTAMP] < timestamp
    liked = set(zip(likes[COL_USER], likes[COL_ITEM]))
    favorites = interactions[interactions[COL_EVENT] == EVENT_FAVORITE]
    assert len(favorites) > 0
    assert set(zip(favorites[COL_USER], favorites[COL_ITEM])) <= liked


def test_view_timestamps_increase_per_user(platform):
    views = platform.interactions[platform.interactions[COL_EVENT] == EVENT_VIEW]
    for _, group in views.groupby(COL_USER):
        assert group[COL_TIMESTAMP].is_monotonic_increasing
        assert group[COL_TIMESTAMP].is_unique


def test_liked_items_come_from_top_topic(platform):
    truth = platform.info["ground_truth"]
    likes = platform.interactions[platform.interactions[COL_EVENT] == EVENT_LIKE]
    topic_share = np.bincount(list(truth["item_topic"].values())) / len(truth["item_topic"])
    observed, chance = [], []
    for user, group in likes.groupby(COL_USER):
        top = int(np.argmax(truth["user_preferences"][user]))
        observed.append(np.mean(_topics_of(platform, group[COL_ITEM]) == top))
        chance.append(topic_share[top])
    # About 1 in 8 by chance; preferences drive likes far above that.
    assert np.mean(observed) > 3 * np.mean(chance)


def test_popularity_is_skewed(platform):
    views = platform.interactions[platform.interactions[COL_EVENT] == EVENT_VIEW]
    counts = views[COL_ITEM].value_counts()
    top_decile = counts.iloc[: len(platform.items) // 10].sum() / len(views)
    assert top_decile > 0.2


def test_noise_weakens_preferences():
    def top_topic_share(noise):
        dataset = make_synthetic(n_users=100, n_items=200, noise=noise, seed=5)
        truth = dataset.info["ground_truth"]
        views = dataset.interactions[dataset.interactions[COL_EVENT] == EVENT_VIEW]
        shares = []
        for user, group in views.groupby(COL_USER):
            top = int(np.argmax(truth["user_preferences"][user]))
            shares.append(np.mean(_topics_of(dataset, group[COL_ITEM]) == top))
        return np.mean(shares)

    assert top_topic_share(0.0) > top_topic_share(1.0) + 0.3


def test_true_affinity_matches_ground_truth(platform):
    truth = platform.info["ground_truth"]
    scores = true_affinity(platform)
    assert scores.shape == (200, 300)
    user, item = "u007", "v123"
    row = platform.users[COL_USER].tolist().index(user)
    column = platform.items[COL_ITEM].tolist().index(item)
    assert scores[row, column] == truth["user_preferences"][user][truth["item_topic"][item]]

    subset = true_affinity(platform, ["u001", "u000"], ["v002", "v001"])
    assert subset.shape == (2, 2)
    assert subset[1, 0] == scores[0, 2]
    assert subset[0, 1] == scores[1, 1]


def test_true_affinity_rows_sum_to_one(platform):
    truth = platform.info["ground_truth"]
    representatives = {}
    for item, topic in truth["item_topic"].items():
        representatives.setdefault(topic, item)
    scores = true_affinity(platform, item_ids=list(representatives.values()))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)


def test_true_affinity_errors(platform, tmp_path):
    with pytest.raises(DataError, match=r"user_id 'nobody' is not in the ground truth"):
        true_affinity(platform, user_ids=["nobody"])
    with pytest.raises(DataError, match=r"item_id 'v999' is not in the ground truth"):
        true_affinity(platform, item_ids=["v999"])
    plain = Dataset("plain", platform.items, platform.users, platform.interactions)
    with pytest.raises(DataError, match=r"dataset 'plain' has no info\['ground_truth'\]"):
        true_affinity(plain)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_topics": 13}, r"n_topics must be between 1 and 12; got 13"),
        ({"n_users": 0}, r"n_users must be a positive integer; got 0"),
        ({"n_items": 5, "n_topics": 8}, r"n_items \(5\) must be at least n_topics \(8\)"),
        ({"interactions_per_user": (5, 2)}, r"1 <= min <= max; got \(5, 2\)"),
        ({"interactions_per_user": 5}, r"must be a pair \(min, max\) of integers; got 5"),
        ({"noise": 1.5}, r"noise must be between 0 and 1; got 1.5"),
        ({"chinese_fraction": -0.1}, r"chinese_fraction must be between 0 and 1; got -0.1"),
    ],
)
def test_invalid_parameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_synthetic(**kwargs)


def test_views_capped_at_catalog_size():
    dataset = make_synthetic(n_users=3, n_items=10, n_topics=2, interactions_per_user=(50, 60), seed=0)
    views = dataset.interactions[dataset.interactions[COL_EVENT] == EVENT_VIEW]
    assert views.groupby(COL_USER).size().tolist() == [10, 10, 10]


def test_load_for_smoke_profile():
    profile = get_profile("smoke")
    dataset = load_for_profile("smoke", seed=7)
    assert dataset.name == "synthetic"
    assert len(dataset.users) == profile.synthetic_users
    assert len(dataset.items) == profile.synthetic_items
    assert dataset.info["params"]["seed"] == 7


def test_load_dataset_synthetic():
    dataset = load_dataset("synthetic", n_users=10, n_items=20, seed=1)
    assert len(dataset.users) == 10
    with pytest.raises(ValueError, match=r"takes no path; got path='data'"):
        load_dataset("synthetic", path="data")
