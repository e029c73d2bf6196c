"""A synthetic micro-video platform with known ground truth.

The generator draws, from one seeded ``numpy.random.Generator``:

1. topics, each with an English and a Chinese vocabulary (fixed lists below);
2. items: one topic each (topics get equal shares of the catalog), a title,
   ``#tags`` and a short description from that topic's vocabulary (a
   ``chinese_fraction`` of items in Chinese), a duration, and a Zipf-like
   popularity;
3. users: topic preferences from a sparse Dirichlet, so most users care
   about one or two topics;
4. events per user, in increasing time: ``view`` (value = watch ratio in
   [0, 1]) on items chosen by preference times popularity, then ``like`` on
   some views with a high watch ratio and ``favorite`` on some likes (value 1.0).

The ground truth (item topics, user preferences, topic names) is stored in
``Dataset.info["ground_truth"]``, and :func:`true_affinity` turns it into a
user x item score matrix for evaluation, A/B simulation and explanation tests.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from vidrec_lab.constants import (
    COL_DESCRIPTION,
    COL_EVENT,
    COL_GENRES,
    COL_ITEM,
    COL_TAGS,
    COL_TIMESTAMP,
    COL_TITLE,
    COL_USER,
    COL_VALUE,
    DEFAULT_SEED,
    EVENT_FAVORITE,
    EVENT_LIKE,
    EVENT_VIEW,
)
from vidrec_lab.tables import DataError, Dataset

logger = logging.getLogger(__name__)

# Extra item column: video length in seconds.
COL_DURATION = "duration_s"
# Extra item column: the language of the item's text ("en" or "zh").
COL_LANGUAGE = "language"

# (name, Chinese name, English words, Chinese words). Every word belongs to one
# topic only, so a text model can in principle recover the topic from a title.
TOPICS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("cooking", "美食", ("noodles", "dumplings", "recipe", "wok", "spicy", "dessert", "kitchen", "braised pork", "street food", "hotpot"),
     ("面条", "饺子", "菜谱", "炒锅", "麻辣", "甜品", "厨房", "红烧肉", "小吃", "火锅")),
    ("pets", "萌宠", ("kitten", "puppy", "cat", "dog", "hamster", "parrot", "pet grooming", "cute paws", "rescue dog", "goldfish"),
     ("小猫", "小狗", "猫咪", "狗狗", "仓鼠", "鹦鹉", "宠物美容", "萌爪", "流浪狗", "金鱼")),
    ("gaming", "游戏", ("boss fight", "speedrun", "esports", "controller", "ranked match", "mobile game", "level up", "headshot", "co-op", "game review"),
     ("打怪", "速通", "电竞", "手柄", "排位赛", "手游", "升级", "爆头", "组队", "游戏测评")),
    ("travel", "旅行", ("road trip", "mountains", "beach", "backpacking", "old town", "hotel tour", "night market", "sunrise", "island", "train ride"),
     ("自驾游", "爬山", "海边", "背包客", "古镇", "酒店", "夜市", "日出", "海岛", "火车")),
    ("fitness", "健身", ("workout", "push-ups", "yoga", "running", "abs", "stretching", "gym", "squats", "marathon", "weight loss"),
     ("锻炼", "俯卧撑", "瑜伽", "跑步", "腹肌", "拉伸", "健身房", "深蹲", "马拉松", "减脂")),
    ("music", "音乐", ("guitar", "piano", "cover song", "concert", "singing", "drum solo", "violin", "karaoke", "band", "live stage"),
     ("吉他", "钢琴", "翻唱", "演唱会", "唱歌", "架子鼓", "小提琴", "卡拉OK", "乐队", "现场")),
    ("comedy", "搞笑", ("prank", "sketch", "funny fail", "stand-up", "parody", "meme", "blooper", "joke", "reaction", "roast"),
     ("恶作剧", "小品", "翻车", "脱口秀", "模仿", "表情包", "花絮", "段子", "反应", "吐槽")),
    ("beauty", "美妆", ("makeup", "lipstick", "skincare", "eyeliner", "hairstyle", "nail art", "foundation", "perfume", "face mask", "blush"),
     ("化妆", "口红", "护肤", "眼线", "发型", "美甲", "粉底", "香水", "面膜", "腮红")),
    ("tech", "科技", ("smartphone", "unboxing", "laptop", "gadget", "robot", "drone", "coding", "headphones", "smartwatch", "camera test"),
     ("手机", "开箱", "笔记本", "数码", "机器人", "无人机", "编程", "耳机", "智能手表", "相机")),
    ("sports", "体育", ("basketball", "football", "goal", "slam dunk", "tennis", "badminton", "table tennis", "volleyball", "highlights", "penalty"),
     ("篮球", "足球", "进球", "扣篮", "网球", "羽毛球", "乒乓球", "排球", "集锦", "点球")),
    ("dance", "舞蹈", ("dance cover", "choreography", "hip hop", "ballet", "street dance", "k-pop dance", "freestyle", "tap dance", "dance battle", "waltz"),
     ("翻跳", "编舞", "嘻哈", "芭蕾", "街舞", "韩舞", "即兴", "踢踏舞", "斗舞", "华尔兹")),
    ("anime", "动漫", ("anime clip", "cosplay", "manga", "animation", "voice acting", "fan art", "mecha", "chibi", "opening theme", "studio"),
     ("番剧", "角色扮演", "漫画", "动画", "配音", "同人图", "机甲", "Q版", "片头曲", "动画工作室")),
)

_EN_TITLES = (
    "{w1} and {w2} in one day",
    "Trying {w1} for the first time",
    "Best {w1} moments this week",
    "How I got into {w1}",
    "{w1} vs {w2}: which is better?",
    "My daily {w1} routine with {w2}",
    "You won't believe this {w1}",
    "Quick {w1} guide for beginners",
)
_ZH_TITLES = (
    "今天的{w1}和{w2}",
    "第一次尝试{w1}",
    "本周最佳{w1}",
    "{w1}新手教程",
    "{w1}还是{w2}？",
    "我的{w1}日常",
    "超好看的{w1}",
    "{w1}挑战，结局意想不到",
)
_EN_DESCRIPTION = "A short {topic} video about {w1}, {w2} and {w3}."
_ZH_DESCRIPTION = "一个关于{w1}、{w2}和{w3}的{topic}短视频。"

_DIRICHLET_ALPHA = 0.3  # below 1, so most users prefer one or two topics
_POPULARITY_EXPONENT = 0.8  # Zipf-like: popularity of the item with rank r is r ** -0.8
_START_TIME = 1_672_531_200  # 2023-01-01 00:00 UTC, the start of the simulated log
_MEAN_GAP_S = 3 * 3600  # mean pause between two views of one user
_LIKE_WATCH_RATIO = 0.7  # only views watched at least this far can be liked
_WATCH_JITTER = 0.1  # standard deviation of the watch ratio around its mean


def _check_parameters(n_users, n_items, n_topics, interactions_per_user, noise, chinese_fraction) -> tuple[int, int]:
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_topics", n_topics)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"make_synthetic: {name} must be a positive integer; got {value!r}")
    if n_topics > len(TOPICS):
        raise ValueError(f"make_synthetic: n_topics must be between 1 and {len(TOPICS)}; got {n_topics}")
    if n_items < n_topics:
        raise ValueError(f"make_synthetic: n_items ({n_items}) must be at least n_topics ({n_topics})")
    try:
        low, high = (int(v) for v in interactions_per_user)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"make_synthetic: interactions_per_user must be a pair (min, max) of integers; got {interactions_per_user!r}"
        ) from err
    if not 1 <= low <= high:
        raise ValueError(
            f"make_synthetic: interactions_per_user must satisfy 1 <= min <= max; got {interactions_per_user!r}"
        )
    for name, value in (("noise", noise), ("chinese_fraction", chinese_fraction)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"make_synthetic: {name} must be between 0 and 1; got {value!r}")
    return low, high


def _id_format(prefix: str, count: int) -> str:
    return prefix + "{:0" + str(len(str(count - 1))) + "d}"


def _make_items(rng: np.random.Generator, n_items: int, n_topics: int, chinese_fraction: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Draw item topics, texts and durations; return the item table and the topic of each item."""
    item_topic = rng.permutation(np.arange(n_items) % n_topics)
    is_chinese = rng.random(n_items) < chinese_fraction
    durations = rng.integers(8, 180, size=n_items)
    id_format = _id_format("v", n_items)

    rows = []
    for index in range(n_items):
        name, name_zh, words_en, words_zh = TOPICS[item_topic[index]]
        chinese = bool(is_chinese[index])
        words = words_zh if chinese else words_en
        w1, w2, w3 = (words[i] for i in rng.choice(len(words), size=3, replace=False))
        tag_count = int(rng.integers(1, 4))
        tags = [words[i] for i in rng.choice(len(words), size=tag_count, replace=False)]
        templates = _ZH_TITLES if chinese else _EN_TITLES
        title = templates[rng.integers(len(templates))].format(w1=w1, w2=w2)
        if chinese:
            description = _ZH_DESCRIPTION.format(topic=name_zh, w1=w1, w2=w2, w3=w3)
            tags.append(name_zh)
        else:
            title = title[0].upper() + title[1:]
            description = _EN_DESCRIPTION.format(topic=name, w1=w1, w2=w2, w3=w3)
            tags.append(name)
        rows.append(
            {
                COL_ITEM: id_format.format(index),
                COL_TITLE: title,
                COL_DESCRIPTION: description,
                COL_TAGS: tags,
                COL_GENRES: [name],
                COL_DURATION: int(durations[index]),
                COL_LANGUAGE: "zh" if chinese else "en",
            }
        )
    return pd.DataFrame(rows), item_topic


def _user_events(
    rng: np.random.Generator,
    user: str,
    preferences: np.ndarray,
    item_topic: np.ndarray,
    popularity: np.ndarray,
    item_ids: list[str],
    durations: np.ndarray,
    n_views: int,
    noise: float,
) -> list[tuple]:
    """Draw one user's views, likes and favourites as (user, item, timestamp, event, value) rows."""
    affinity = preferences[item_topic]
    relative = affinity / affinity.max()
    weights = popularity * affinity
    weights = (1.0 - noise) * weights / weights.sum() + noise * popularity / popularity.sum()
    # Gumbel top-k draws n_views distinct items with the same law as sequential
    # sampling without replacement in proportion to the weights.
    keys = np.log(weights) + rng.gumbel(size=len(weights))
    chosen = np.argpartition(-keys, n_views - 1)[:n_views]
    chosen = chosen[np.argsort(-keys[chosen], kind="stable")]

    start = _START_TIME + int(rng.integers(0, 30 * 86400))
    gaps = rng.exponential(_MEAN_GAP_S, size=n_views).astype(np.int64) + 1
    view_times = start + np.cumsum(gaps)
    watch = np.clip(0.15 + 0.75 * relative[chosen] + rng.normal(0.0, _WATCH_JITTER, size=n_views), 0.0, 1.0)
    like_draw = rng.random(n_views)
    favorite_draw = rng.random(n_views)

    events = []
    for position, item in enumerate(chosen):
        ts = int(view_times[position])
        ratio = float(round(watch[position], 4))
        events.append((user, item_ids[item], ts, EVENT_VIEW, ratio))
        liked = ratio >= _LIKE_WATCH_RATIO and like_draw[position] < 0.8 * relative[item]
        if not liked:
            continue
        # Likes come once the viewer has watched, favourites a few seconds after the like.
        like_time = ts + max(1, int(ratio * durations[item]))
        events.append((user, item_ids[item], like_time, EVENT_LIKE, 1.0))
        if favorite_draw[position] < 0.4 * relative[item]:
            events.append((user, item_ids[item], like_time + 3, EVENT_FAVORITE, 1.0))
    return events


def make_synthetic(
    n_users: int = 200,
    n_items: int = 300,
    n_topics: int = 8,
    *,
    interactions_per_user: tuple[int, int] = (10, 40),
    noise: float = 0.1,
    chinese_fraction: float = 0.2,
    seed: int = DEFAULT_SEED,
) -> Dataset:
    """Generate a micro-video platform whose users' tastes are known.

    Items: ``title``, ``tags`` (topic words as hashtags plus the topic name),
    ``description``, ``genres`` = [topic name], and the extra columns
    ``duration_s`` and ``language`` (``"en"`` or ``"zh"``). Users: ids only.
    Interactions: ``view`` with the watch ratio as value, ``like`` and
    ``favorite`` with value 1.0; each user's events increase in time.

    How events follow preferences: a user's views are drawn without
    replacement with probability proportional to ``(1 - noise) *
    preference(topic) * popularity + noise * popularity`` (each term
    normalised). The watch ratio is ``0.15 + 0.75 * relative preference`` plus
    Gaussian jitter (sd 0.1), clipped to [0, 1], where the relative preference
    is the preference for the item's topic divided by the user's largest one.
    A view with a watch ratio of at least 0.7 is liked with probability
    ``0.8 * relative preference``, and a like becomes a favourite with
    probability ``0.4 * relative preference``.

    Args:
        n_users (int): Number of users.
        n_items (int): Number of items (at least ``n_topics``).
        n_topics (int): Number of latent topics, 1 to ``len(TOPICS)`` (12).
        interactions_per_user (tuple of int): Inclusive (min, max) number of
            views per user, drawn uniformly and capped at ``n_items``.
        noise (float): Share of the view probability that ignores the user's
            preferences and follows popularity alone, in [0, 1].
        chinese_fraction (float): Expected share of items with Chinese title,
            tags and description, in [0, 1].
        seed (int): Seed of the one random generator used; the same seed
            gives identical tables.

    Returns:
        Dataset: ``name="synthetic"``. ``info["ground_truth"]`` contains
        ``topics`` (names), ``topics_zh``, ``item_topic`` (item id -> topic
        index) and ``user_preferences`` (user id -> list of topic
        probabilities); ``info["params"]`` contains the arguments.

    Raises:
        ValueError: on an argument outside its range (the message gives the
            range and the value received).
    """
    low, high = _check_parameters(n_users, n_items, n_topics, interactions_per_user, noise, chinese_fraction)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)

    items, item_topic = _make_items(rng, n_items, n_topics, chinese_fraction)
    ranks = rng.permutation(n_items) + 1
    popularity = ranks.astype(float) ** -_POPULARITY_EXPONENT
    preferences = rng.dirichlet(np.full(n_topics, _DIRICHLET_ALPHA), size=n_users)
    # A Dirichlet draw can underflow to exactly 0; a floor keeps every item reachable.
    preferences = np.maximum(preferences, 1e-6)
    preferences /= preferences.sum(axis=1, keepdims=True)
    views_per_user = np.minimum(rng.integers(low, high + 1, size=n_users), n_items)

    user_ids = [_id_format("u", n_users).format(i) for i in range(n_users)]
    item_ids = items[COL_ITEM].tolist()
    durations = items[COL_DURATION].to_numpy()
    events: list[tuple] = []
    for index, user in enumerate(user_ids):
        events.extend(
            _user_events(
                rng, user, preferences[index], item_topic, popularity, item_ids, durations,
                int(views_per_user[index]), float(noise),
            )
        )
    interactions = pd.DataFrame(events, columns=[COL_USER, COL_ITEM, COL_TIMESTAMP, COL_EVENT, COL_VALUE])

    topic_names = [TOPICS[t][0] for t in range(n_topics)]
    info = {
        "params": {
            "n_users": n_users,
            "n_items": n_items,
            "n_topics": n_topics,
            "interactions_per_user": [low, high],
            "noise": float(noise),
            "chinese_fraction": float(chinese_fraction),
            "seed": seed,
        },
        "ground_truth": {
            "topics": topic_names,
            "topics_zh": [TOPICS[t][1] for t in range(n_topics)],
            "item_topic": {item: int(topic) for item, topic in zip(item_ids, item_topic)},
            "user_preferences": {user: preferences[i].tolist() for i, user in enumerate(user_ids)},
        },
    }
    dataset = Dataset("synthetic", items, pd.DataFrame({COL_USER: user_ids}), interactions, source=f"make_synthetic(seed={seed})", info=info)
    logger.info(
        "synthetic: %d users, %d items, %d events (seed %d) in %.2f s",
        n_users, n_items, len(dataset.interactions), seed, time.perf_counter() - started,
    )
    return dataset


def true_affinity(dataset: Dataset, user_ids=None, item_ids=None) -> np.ndarray:
    """Return the ground-truth preference of each user for each item's topic.

    The score of (user, item) is the user's preference probability for the
    item's topic, so each user's scores over one item per topic sum to 1.

    Args:
        dataset (Dataset): A data set made by :func:`make_synthetic`.
        user_ids (sequence of str, optional): Rows; default every user in
            ``dataset.users``.
        item_ids (sequence of str, optional): Columns; default every item in
            ``dataset.items``.

    Returns:
        numpy.ndarray: float64 matrix of shape (len(user_ids), len(item_ids)).

    Raises:
        DataError: when the data set has no ground truth or an id is unknown
            (the message names the id).
    """
    truth = dataset.info.get("ground_truth")
    if not truth:
        raise DataError(
            f"true_affinity: dataset {dataset.name!r} has no info['ground_truth']; only make_synthetic() data sets have one"
        )
    user_ids = dataset.users[COL_USER].tolist() if user_ids is None else [str(u) for u in user_ids]
    item_ids = dataset.items[COL_ITEM].tolist() if item_ids is None else [str(i) for i in item_ids]
    preferences = truth["user_preferences"]
    topics = truth["item_topic"]
    for user in user_ids:
        if user not in preferences:
            raise DataError(f"true_affinity: user_id {user!r} is not in the ground truth of {dataset.name!r}")
    for item in item_ids:
        if item not in topics:
            raise DataError(f"true_affinity: item_id {item!r} is not in the ground truth of {dataset.name!r}")
    user_matrix = np.asarray([preferences[u] for u in user_ids], dtype=np.float64).reshape(len(user_ids), -1)
    item_topic = np.asarray([topics[i] for i in item_ids], dtype=np.int64)
    return user_matrix[:, item_topic]
