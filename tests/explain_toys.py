"""Small models and data whose correct explanation is known, shared by the explanation tests.

The catalog has three topics. Each item's title contains two words of its
topic and two noise words. Users have a history of items from one topic.
Two modalities are built per item. ``signal`` is a noisy one-hot of the
topic, and ``noise`` is a random vector with no relation to the topic. The
tests add ``text``, a bag-of-words vector of the title. A faithful explainer must give
the topic words and the ``signal`` modality the largest attributions.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_EVENT, COL_GENRES, COL_ITEM, COL_TIMESTAMP, COL_TITLE, COL_USER, COL_VALUE

TOPIC_WORDS = (
    ("space", "rocket", "alien", "planet"),
    ("love", "wedding", "romance", "kiss"),
    ("crime", "detective", "heist", "police"),
)
NOISE_WORDS = ("blue", "tuesday", "window", "river", "paper", "green", "chair", "cloud", "seven", "lamp")
# Chinese words for the same topics, to check that CJK text passes through.
CJK_TOPIC_WORDS = (("太", "空"), ("爱", "情"), ("犯", "罪"))
_TOKEN_RE = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]+")


class BagOfWordsEncoder:
    """A deterministic stand-in for TextEncoder: L2-normalised word counts over a fixed vocabulary.

    Every call is recorded in ``calls`` (the number of texts), so tests can
    check that an explainer batches its texts.
    """

    def __init__(self, vocabulary):
        self.vocabulary = {word: i for i, word in enumerate(vocabulary)}
        self.calls: list[int] = []

    @property
    def dimension(self) -> int:
        return len(self.vocabulary)

    def encode(self, texts) -> np.ndarray:
        texts = list(texts)
        self.calls.append(len(texts))
        out = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN_RE.findall(str(text).lower()):
                if token in self.vocabulary:
                    out[row, self.vocabulary[token]] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def vocabulary() -> list[str]:
    words = [w for topic in TOPIC_WORDS for w in topic] + list(NOISE_WORDS)
    return words + [c for topic in CJK_TOPIC_WORDS for word in topic for c in word]


def topic_catalog(*, items_per_topic: int = 8, users_per_topic: int = 3, history_len: int = 4, seed: int = 0, chinese: bool = False):
    """Return (items, interactions, features, item_topic, user_topic) of the three-topic toy platform."""
    rng = np.random.default_rng(seed)
    rows, topics = [], []
    for topic, words in enumerate(TOPIC_WORDS):
        for j in range(items_per_topic):
            chosen = list(rng.choice(words, size=2, replace=False)) + list(rng.choice(NOISE_WORDS, size=2, replace=False))
            rng.shuffle(chosen)
            title = " ".join(chosen)
            if chinese:
                title = "".join(CJK_TOPIC_WORDS[topic]) + " " + title
            rows.append({COL_ITEM: f"i{topic}{j:02d}", COL_TITLE: title, COL_GENRES: [f"topic{topic}"]})
            topics.append(topic)
    items = pd.DataFrame(rows)
    item_topic = np.array(topics)

    events, user_topic = [], {}
    timestamp = 0
    for topic in range(len(TOPIC_WORDS)):
        topic_items = items.loc[item_topic == topic, COL_ITEM].tolist()
        for u in range(users_per_topic):
            user = f"u{topic}{u}"
            user_topic[user] = topic
            for item in rng.choice(topic_items, size=history_len, replace=False):
                timestamp += 1
                events.append({COL_USER: user, COL_ITEM: item, COL_TIMESTAMP: timestamp, COL_EVENT: "view", COL_VALUE: 1.0})
    interactions = pd.DataFrame(events)

    n_items = len(items)
    signal = np.eye(len(TOPIC_WORDS), dtype=np.float32)[item_topic] + 0.05 * rng.standard_normal((n_items, len(TOPIC_WORDS))).astype(np.float32)
    noise = rng.standard_normal((n_items, 8)).astype(np.float32)
    features = {"signal": signal, "noise": noise}
    return items, interactions, features, item_topic, user_topic


def weighted_fusion(dims: dict[str, int], *, out_dim: int = 16, seed: int = 0, weights: dict[str, float] | None = None):
    """Return an untrained WeightedSumFusion with seeded projections and equal fixed weights."""
    import torch

    from vidrec_lab.fusion import WeightedSumFusion

    torch.manual_seed(seed)
    weights = weights or {name: 1.0 for name in dims}
    return WeightedSumFusion(dims, out_dim, weights=weights).eval()
