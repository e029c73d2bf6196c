"""Non-neural baselines behind the :class:`~vidrec_lab.recommend.Recommender` interface.

* :class:`MostPopular` ranks items by how many training users interacted with them.
* :class:`ItemKNN` scores an item by its cosine similarity to the user's history
  (Sarwar et al., 2001, "Item-based collaborative filtering recommendation algorithms").
* :class:`EASE` is the closed-form shallow autoencoder of Steck (2019),
  "Embarrassingly Shallow Autoencoders for Sparse Data".

All three treat every interaction as binary implicit feedback, and score all
users of a chunk with one sparse-dense matrix product.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import COL_ITEM, COL_USER
from vidrec_lab.recommend import Recommender, build_matrix

logger = logging.getLogger(__name__)


def _train_matrix(model: Recommender, train: pd.DataFrame) -> sp.csr_matrix:
    users = sorted(train[COL_USER].astype(str).unique())
    return build_matrix(train, users, model.item_index_)


class MostPopular(Recommender):
    """Rank every item by its number of distinct training users, the same list for everyone.

    Items without training interactions (cold items) score 0, so on a
    cold-start split this model ranks them in catalog order: it has no signal.
    """

    name = "MostPopular"

    def _fit(self, train: pd.DataFrame) -> None:
        matrix = _train_matrix(self, train)
        self.popularity_ = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)  # (n_items,)

    def _score_matrix(self, user_ids, history):
        return np.broadcast_to(self.popularity_, (len(user_ids), len(self.popularity_))).copy()


class ItemKNN(Recommender):
    """Item-based k-nearest-neighbour recommender with cosine similarity.

    Args:
        n_neighbors (int): Similarities kept per item (the rest set to 0);
            ``None`` keeps all.
        shrink (float): Added to the cosine denominator, damping similarities
            computed from few co-occurrences.
    """

    name = "ItemKNN"

    def __init__(self, n_neighbors: int | None = 100, shrink: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if n_neighbors is not None and n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer or None; got {n_neighbors}")
        if shrink < 0:
            raise ValueError(f"shrink must be non-negative; got {shrink}")
        self.n_neighbors = n_neighbors
        self.shrink = shrink

    def _fit(self, train: pd.DataFrame) -> None:
        matrix = _train_matrix(self, train)
        co = (matrix.T @ matrix).toarray().astype(np.float64)  # (n_items, n_items) co-occurrence counts
        norms = np.sqrt(np.diag(co))
        similarity = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(similarity, 0.0)
        if self.n_neighbors is not None and self.n_neighbors < similarity.shape[1]:
            # Keep each item's strongest neighbours (by column, so a column scores from its neighbours).
            cut = np.partition(similarity, -self.n_neighbors, axis=0)[-self.n_neighbors]
            similarity[similarity < cut[None, :]] = 0.0
        self.similarity_ = similarity.astype(np.float32)

    def _score_matrix(self, user_ids, history):
        return np.asarray(history @ self.similarity_)


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder: one item-item weight matrix in closed form.

    ``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1``, which is the
    ridge regression of each item on all others with a zero diagonal.

    Args:
        l2 (float): Ridge penalty; a few hundred suits MovieLens-100k.
    """

    name = "EASE"

    def __init__(self, l2: float = 500.0, **kwargs):
        super().__init__(**kwargs)
        if l2 <= 0:
            raise ValueError(f"l2 must be positive; got {l2}")
        self.l2 = l2

    def _fit(self, train: pd.DataFrame) -> None:
        matrix = _train_matrix(self, train)
        gram = (matrix.T @ matrix).toarray().astype(np.float64)  # (n_items, n_items)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = -precision / np.diag(precision)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32)

    def _score_matrix(self, user_ids, history):
        return np.asarray(history @ self.weights_)


BASELINES = {"MostPopular": MostPopular, "ItemKNN": ItemKNN, "EASE": EASE}


def make_baselines(**overrides) -> dict[str, Recommender]:
    """Return fresh, unfitted instances of every baseline, keyed by name.

    ``overrides`` maps a baseline name to its keyword arguments, e.g.
    ``make_baselines(EASE={"l2": 200})``.
    """
    unknown = [name for name in overrides if name not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; expected names among {list(BASELINES)}")
    return {name: cls(**overrides.get(name, {})) for name, cls in BASELINES.items()}
