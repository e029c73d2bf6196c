"""Cheaper text encoding and serving: int8 quantisation, smaller encoders, precomputed item vectors.

* :func:`quantize_dynamic_int8` converts an encoder's ``nn.Linear`` layers to
  dynamic int8 (weights stored as int8, activations quantised per batch) for
  CPU inference, and :func:`keep_first_layers` cuts a BERT-style encoder to
  its first N transformer layers.
* :class:`EncoderSetting` names one combination (precision, layers, token
  limit), and :class:`CompactTextEncoder` is a
  :class:`~vidrec_lab.features.text.TextEncoder` built from it, with the
  setting in its cache key.
* :func:`benchmark_encoders` measures items per second and the mean cosine
  to the full-precision vectors; :func:`compare_encoder_settings` adds the
  NDCG@10 of a content recommender (:class:`EmbeddingRecommender`) on a split.
* :class:`ServingIndex` and :func:`measure_serving_latency` time the default
  serving path: item vectors computed once (and cached on disk by
  :func:`vidrec_lab.features.text.encode_items`), then one matrix-vector
  product and a top-K per request.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_ITEM, COL_USER, DEFAULT_SEED
from vidrec_lab.features.text import TextEncoder
from vidrec_lab.recommend import Recommender
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

# The feed-forward output projection of BERT layers (encoder.layer.N.output.dense). Its input comes
# out of GELU with a long tail, so int8 activations lose the most there. Mean cosine to float32 on
# MovieLens-100k item texts with all-MiniLM-L6-v2: 0.975 with every Linear layer in int8, 0.981
# with the first layer's projection kept in float32 (the default), 0.988 with all six kept.
FIRST_FFN_OUTPUT = r"^encoder\.layer\.0\.output\.dense$"
FFN_OUTPUT_LAYERS = r"layer\.\d+\.output\.dense$"


def quantize_dynamic_int8(model: nn.Module, *, keep_float: str | None = FIRST_FFN_OUTPUT, per_channel: bool = True) -> nn.Module:
    """Return a copy of ``model`` with its ``nn.Linear`` layers in dynamic int8, for CPU inference.

    Uses ``torch.ao.quantization.quantize_dynamic``. Weights are quantised
    once, per output channel by default, and activations per batch at run time.

    Args:
        model (torch.nn.Module): A float32 model on the CPU; it is not changed.
        keep_float (str or None): Regular expression; Linear layers whose
            qualified name matches stay float32. None quantises every one.
        per_channel (bool): One scale per output channel (more accurate)
            instead of one per weight matrix.

    Returns:
        torch.nn.Module: The quantised copy, in eval mode.

    Raises:
        RuntimeError: When this torch build has no quantised CPU engine.
        ValueError: When ``model`` has parameters off the CPU or no Linear layer to quantise.

    Note:
        In torch 2.13 this API still works but is deprecated: eager-mode
        quantisation moves to the separate ``torchao`` package, and quantised
        tensor types are to be removed in a later release.
    """
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    if not torch.backends.quantized.supported_engines or torch.backends.quantized.supported_engines == ["none"]:
        raise RuntimeError("this torch build has no quantised CPU engine (torch.backends.quantized.supported_engines is empty)")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"quantize_dynamic_int8: dynamic int8 runs on the CPU only; the model has parameters on {sorted(devices)}")
    pattern = re.compile(keep_float) if keep_float else None
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not (pattern and pattern.search(name))
    }
    if not spec:
        raise ValueError(f"quantize_dynamic_int8: no nn.Linear layer left to quantise (keep_float={keep_float!r})")
    with warnings.catch_warnings():
        # torch 2.13 warns on every call that eager-mode quantisation moves to torchao and that
        # quantised tensor types are deprecated. The docstring's Note records this once.
        warnings.filterwarnings("ignore", message=".*torchao.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), spec, dtype=torch.qint8)
    logger.info("quantised %d Linear layers to dynamic int8 (%s)", len(spec), "per channel" if per_channel else "per tensor")
    return quantized


def keep_first_layers(model: nn.Module, n_layers: int) -> nn.Module:
    """Return a copy of a BERT-style encoder with only its first ``n_layers`` transformer layers.

    Args:
        model (torch.nn.Module): A ``transformers`` model with ``encoder.layer`` (BERT, MiniLM, RoBERTa).
        n_layers (int): Layers to keep, from 1 to the model's count.

    Raises:
        ValueError: When the model has no ``encoder.layer`` list or ``n_layers`` is out of range.
    """
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"keep_first_layers: {type(model).__name__} has no encoder.layer list (BERT layout)")
    if isinstance(n_layers, bool) or not isinstance(n_layers, (int, np.integer)) or not 1 <= n_layers <= len(layers):
        raise ValueError(f"keep_first_layers: n_layers must be an integer from 1 to {len(layers)}; got {n_layers!r}")
    smaller = copy.deepcopy(model)
    smaller.encoder.layer = nn.ModuleList(list(smaller.encoder.layer)[: int(n_layers)])
    if hasattr(smaller, "config"):
        smaller.config.num_hidden_layers = int(n_layers)
    return smaller


# --------------------------------------------------------------------------- encoder settings


@dataclass(frozen=True)
class EncoderSetting:
    """One way to run the text encoder: precision, depth and token limit.

    Attributes:
        name (str): Label for tables and plots.
        int8 (bool): Dynamic int8 Linear layers (:func:`quantize_dynamic_int8`).
        n_layers (int or None): Keep the first N transformer layers; None keeps all.
        max_length (int): Tokens kept per text, special tokens included.
        keep_float (str or None): Linear layers left in float32 when ``int8``.
    """

    name: str
    int8: bool = False
    n_layers: int | None = None
    max_length: int = 128
    keep_float: str | None = FIRST_FFN_OUTPUT

    def to_dict(self) -> dict:
        return asdict(self)


# The settings benchmarks/bench_quantization.py compares; the first is the reference.
DEFAULT_SETTINGS = (
    EncoderSetting("float32"),
    EncoderSetting("int8", int8=True),
    EncoderSetting("int8, FFN outputs float32", int8=True, keep_float=FFN_OUTPUT_LAYERS),
    EncoderSetting("int8, all Linear", int8=True, keep_float=None),
    EncoderSetting("32 tokens", max_length=32),
    EncoderSetting("3 layers", n_layers=3),
    EncoderSetting("int8, 3 layers", int8=True, n_layers=3),
)
_PROFILE_SETTINGS = {
    "smoke": ("float32", "int8", "3 layers"),
    "fast": ("float32", "int8", "int8, all Linear", "32 tokens", "3 layers"),
}


def settings_for_profile(profile) -> tuple[EncoderSetting, ...]:
    """Return the encoder settings notebook 08 compares under a run profile.

    ``smoke`` compares three settings and ``fast`` five, because loading the
    encoder once per setting dominates a short run. ``full`` compares all of
    :data:`DEFAULT_SETTINGS`.
    """
    from vidrec_lab.config import get_profile

    names = _PROFILE_SETTINGS.get(get_profile(profile).name)
    if names is None:
        return DEFAULT_SETTINGS
    return tuple(s for s in DEFAULT_SETTINGS if s.name in names)


class CompactTextEncoder(TextEncoder):
    """A :class:`~vidrec_lab.features.text.TextEncoder` run in a cheaper :class:`EncoderSetting`.

    The model loads as usual and is then cut to ``setting.n_layers`` and/or
    quantised to int8. The setting is part of :meth:`cache_key`, so cached
    vectors of different settings never mix. int8 runs on the CPU only.

    Args:
        setting (EncoderSetting): How to run the encoder.
        model_name_or_path (str, optional): Passed to ``TextEncoder``; default all-MiniLM-L6-v2.
        **kwargs: Other ``TextEncoder`` arguments (``batch_size``, ``num_threads``, ...).
    """

    def __init__(self, setting: EncoderSetting, model_name_or_path=None, **kwargs) -> None:
        if setting.int8 and kwargs.get("device") not in (None, "cpu"):
            raise ValueError(f"CompactTextEncoder: int8 setting {setting.name!r} runs on the CPU only; got device={kwargs['device']!r}")
        if setting.int8:
            kwargs["device"] = "cpu"
        super().__init__(model_name_or_path, max_length=setting.max_length, **kwargs)
        self.setting = setting

    def __repr__(self) -> str:
        return f"CompactTextEncoder({self.model_id!r}, setting={self.setting.name!r})"

    @property
    def is_loaded(self) -> bool:
        """True once the model weights are in memory."""
        return self._model is not None

    def load(self) -> "CompactTextEncoder":
        """Load the model, cut and quantise it as the setting requests, and return ``self``."""
        if self._model is not None:
            return self
        super().load()
        model = self._model
        if self.setting.n_layers is not None:
            model = keep_first_layers(model, self.setting.n_layers)
        if self.setting.int8:
            model = quantize_dynamic_int8(model, keep_float=self.setting.keep_float)
        self._model = model.eval()
        return self

    def cache_key(self) -> dict:
        """Return the base key plus the setting (precision, layers, float32 layers)."""
        key = super().cache_key()
        key["compact"] = {"int8": self.setting.int8, "n_layers": self.setting.n_layers, "keep_float": self.setting.keep_float if self.setting.int8 else None}
        return key


def benchmark_encoders(
    texts: Sequence[str],
    settings: Sequence[EncoderSetting] = DEFAULT_SETTINGS,
    *,
    model_name_or_path=None,
    repeats: int = 3,
    batch_size: int = 64,
    num_threads: int = 2,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Time each encoder setting on ``texts`` and compare its vectors with the first setting's.

    Every setting encodes all texts ``repeats`` times. The settings take
    turns in each round, so a burst of load from other processes does not
    fall on one setting only, and the fastest round counts. Load time is excluded.

    Args:
        texts (sequence of str): Texts to encode (item texts).
        settings (sequence of EncoderSetting): The first one is the reference.
        model_name_or_path (str, optional): Encoder; default all-MiniLM-L6-v2.
        repeats (int): Timed rounds.
        batch_size (int): Texts per forward pass.
        num_threads (int): PyTorch CPU threads while encoding.

    Returns:
        tuple: A table with one row per setting (``setting, int8, n_layers,
        max_length, items_per_s, cpu_items_per_s, speedup, mean_cosine,
        min_cosine``) and a dict setting name -> (n_texts, dim) vectors from
        the last round. ``cpu_items_per_s`` divides by process CPU time,
        which other processes on the machine disturb less than wall time.

    Raises:
        ValueError: On no settings, duplicate names, no texts or ``repeats`` < 1.
    """
    texts = list(texts)
    if not settings:
        raise ValueError("benchmark_encoders: settings is empty; pass at least one EncoderSetting")
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark_encoders: setting names must be unique; got {names}")
    if not texts:
        raise ValueError("benchmark_encoders: texts is empty")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"benchmark_encoders: repeats must be a positive integer; got {repeats!r}")
    encoders = {
        s.name: CompactTextEncoder(s, model_name_or_path, batch_size=batch_size, num_threads=num_threads, device="cpu", progress=False).load()
        for s in settings
    }
    wall = {name: np.inf for name in names}
    cpu = {name: np.inf for name in names}
    vectors: dict[str, np.ndarray] = {}
    for _ in tqdm(range(repeats), desc="benchmark encoders", unit="round"):
        for name, encoder in encoders.items():
            started_wall, started_cpu = time.perf_counter(), time.process_time()
            vectors[name] = encoder.encode(texts)
            wall[name] = min(wall[name], time.perf_counter() - started_wall)
            cpu[name] = min(cpu[name], time.process_time() - started_cpu)
    reference = vectors[names[0]]
    rows = []
    for setting in settings:
        cosine = np.sum(vectors[setting.name] * reference, axis=1)  # rows are unit vectors
        rows.append({
            "setting": setting.name,
            "int8": setting.int8,
            "n_layers": setting.n_layers,
            "max_length": setting.max_length,
            "items_per_s": len(texts) / wall[setting.name],
            "cpu_items_per_s": len(texts) / cpu[setting.name],
            "speedup": wall[names[0]] / wall[setting.name],
            "mean_cosine": float(cosine.mean()),
            "min_cosine": float(cosine.min()),
        })
    return pd.DataFrame(rows), vectors


# --------------------------------------------------------------------------- content recommender and serving


def _aligned_vectors(item_ids: Sequence[str], vectors: np.ndarray, catalog: Sequence[str], *, where: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
        raise ValueError(f"{where}: expected one vector per item id; got {len(item_ids)} ids and shape {vectors.shape}")
    position = {str(i): row for row, i in enumerate(item_ids)}
    missing = [i for i in catalog if i not in position]
    if missing:
        raise DataError(f"{where}: {len(missing)} catalog items have no vector, e.g. {missing[:3]}; encode every catalog item")
    return vectors[[position[i] for i in catalog]]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class EmbeddingRecommender(Recommender):
    """Content recommender: rank items by cosine similarity to the mean vector of the user's history.

    It learns nothing from interactions, so it scores cold items like any
    other and its quality measures the item vectors themselves.

    Args:
        item_ids (sequence of str): Ids of the rows of ``vectors``.
        vectors (numpy.ndarray): (n, d) item vectors (e.g. text embeddings).
        name (str, optional): Model name in result tables.
    """

    name = "embedding"
    scores_cold_items = True

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, *, name: str | None = None, chunk_size: int = 1024) -> None:
        super().__init__(chunk_size=chunk_size)
        self.source_ids = [str(i) for i in item_ids]
        self.vectors = vectors
        if name is not None:
            self.name = name

    def _fit(self, train: pd.DataFrame) -> None:
        self.item_vectors_ = _unit_rows(_aligned_vectors(self.source_ids, self.vectors, self.item_ids_, where=f"{self.name}.fit"))

    def _score_matrix(self, user_ids: list[str], history: sp.csr_matrix) -> np.ndarray:
        profiles = _unit_rows(np.asarray(history @ self.item_vectors_, dtype=np.float32))  # (n_users, d)
        return profiles @ self.item_vectors_.T  # (n_users, n_items)


class ServingIndex:
    """Precomputed, L2-normalised item vectors that serve one top-K request at a time.

    A request carries the user's recent item ids. The response is the ``k``
    unseen items most similar to their mean vector, computed with one
    matrix-vector product over the catalog and a partial sort. This is the default serving path:
    item vectors come from :func:`vidrec_lab.features.text.encode_items`,
    which caches them on disk, so no encoder runs while serving.

    Args:
        item_ids (sequence of str): Catalog ids, one per row of ``vectors``.
        vectors (numpy.ndarray): (n_items, d) item vectors.
    """

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
            raise ValueError(f"ServingIndex: expected one vector per item id; got {len(item_ids)} ids and shape {vectors.shape}")
        self.item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
        self.position = {item: row for row, item in enumerate(self.item_ids)}
        if len(self.position) != len(self.item_ids):
            raise ValueError("ServingIndex: item ids must be unique")
        self.vectors = np.ascontiguousarray(_unit_rows(vectors))

    def recommend(self, history: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Return (item ids, scores) of the top-``k`` unseen items for one user's history, best first.

        Unknown history ids are ignored; an empty history scores every item 0,
        so the first ``k`` catalog items come back.
        """
        if k < 1:
            raise ValueError(f"k must be a positive integer; got {k}")
        rows = [self.position[i] for i in history if i in self.position]
        profile = self.vectors[rows].sum(axis=0) if rows else np.zeros(self.vectors.shape[1], dtype=np.float32)
        scores = self.vectors @ profile  # (n_items,)
        scores[rows] = -np.inf
        k = min(k, len(scores) - len(set(rows)))
        if k <= 0:
            return np.array([], dtype=object), np.array([], dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # best first, ties by catalog position
        return self.item_ids[top], scores[top]


def measure_serving_latency(
    index: ServingIndex,
    history: pd.DataFrame,
    *,
    k: int = 10,
    n_requests: int = 200,
    blas_threads: int | None = 1,
    seed: int = DEFAULT_SEED,
) -> dict:
    """Time ``n_requests`` single-user top-``k`` requests against a :class:`ServingIndex`.

    Users are drawn with ``numpy.random.default_rng(seed)`` from ``history``;
    each request passes the user's item ids. Grouping the history per user is
    done before timing, as a serving system keeps it in a key-value store.

    Requests run with ``blas_threads`` BLAS threads (one by default, as a
    server runs one request per thread). A matrix-vector product this small
    gains nothing from more threads, and on a busy machine waking them can
    cost 10 to 100 times the product itself.

    Args:
        index (ServingIndex): Precomputed item vectors.
        history (pandas.DataFrame): Interactions with ``user_id`` and ``item_id``.
        k (int): List length per request.
        n_requests (int): Timed requests.
        blas_threads (int or None): BLAS threads while timing (threadpoolctl); None leaves them as they are.
        seed (int): Seed of the request users.

    Returns:
        dict: ``median_ms``, ``p95_ms``, ``mean_ms``, ``requests_per_s``,
        ``n_requests``, ``n_items``, ``k``.

    Raises:
        DataError: On a missing column or an empty history.
    """
    require_columns(history, [COL_USER, COL_ITEM], where="measure_serving_latency(history)")
    if len(history) == 0:
        raise DataError("measure_serving_latency: the history table is empty")
    per_user = history.groupby(COL_USER, sort=True)[COL_ITEM].agg(lambda items: [str(i) for i in items])
    rng = np.random.default_rng(seed)
    users = rng.choice(len(per_user), size=n_requests, replace=True)
    histories = [per_user.iloc[int(user)] for user in users]
    times = np.empty(n_requests)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        index.recommend(histories[0], k)  # warm-up: first-call allocations are not a request's cost
        for position, items in enumerate(histories):
            started = time.perf_counter()
            index.recommend(items, k)
            times[position] = time.perf_counter() - started
    return {
        "median_ms": float(np.median(times) * 1e3),
        "p95_ms": float(np.percentile(times, 95) * 1e3),
        "mean_ms": float(times.mean() * 1e3),
        "requests_per_s": float(n_requests / times.sum()),
        "n_requests": int(n_requests),
        "n_items": int(len(index.item_ids)),
        "k": int(k),
        "blas_threads": blas_threads,
    }


def compare_encoder_settings(
    split,
    items: pd.DataFrame,
    settings: Sequence[EncoderSetting] = DEFAULT_SETTINGS,
    *,
    model_name_or_path=None,
    repeats: int = 3,
    batch_size: int = 64,
    num_threads: int = 2,
    k: int = 10,
    n_bootstrap: int = 200,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Measure each encoder setting's cost (items/s) and quality (cosine to float32, NDCG@k).

    Item texts come from :func:`vidrec_lab.features.text.compose_item_text`.
    Quality is the NDCG@k of an :class:`EmbeddingRecommender` on the
    setting's vectors, fitted on ``split.train`` and evaluated by
    :func:`vidrec_lab.evaluation.protocol.evaluate` (full ranking).

    Returns:
        pandas.DataFrame: The :func:`benchmark_encoders` table plus
        ``ndcg``, ``ci_low``, ``ci_high`` (95% bootstrap) and ``n_items``.
    """
    from vidrec_lab.evaluation.protocol import evaluate
    from vidrec_lab.features.text import compose_item_text

    texts = compose_item_text(items)
    table, vectors = benchmark_encoders(
        texts.tolist(), settings, model_name_or_path=model_name_or_path, repeats=repeats, batch_size=batch_size, num_threads=num_threads
    )
    item_ids = [str(i) for i in texts.index]
    models = {name: EmbeddingRecommender(item_ids, matrix, name=name).fit(split.train, items) for name, matrix in vectors.items()}
    result = evaluate(models, split, ks=(k,), metrics=("ndcg",), n_bootstrap=n_bootstrap, seed=seed, segments=False)
    quality = result.table.set_index("model")[["value", "ci_low", "ci_high"]].rename(columns={"value": "ndcg"})
    table = table.join(quality, on="setting")
    table["k"] = k
    table["n_items"] = len(item_ids)
    return table


def plot_cost_quality(table: pd.DataFrame, *, throughput: str = "items_per_s", ax=None):
    """Plot NDCG@k against encoding throughput (log scale), one point per setting, named in the legend.

    Args:
        table (pandas.DataFrame): Output of :func:`compare_encoder_settings`.
        throughput (str): ``"items_per_s"`` (wall clock) or ``"cpu_items_per_s"``
            (process CPU time, steadier on a shared machine).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new one.

    Returns:
        matplotlib.axes.Axes: The axes.
    """
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from vidrec_lab.viz import PALETTE, new_axes

    if throughput not in ("items_per_s", "cpu_items_per_s"):
        raise ValueError(f"throughput must be 'items_per_s' or 'cpu_items_per_s'; got {throughput!r}")
    require_columns(table, ["setting", throughput, "ndcg", "ci_low", "ci_high", "k"], where="plot_cost_quality(table)")
    if ax is None:
        _, ax = new_axes()
    markers = "osD^vP*X"
    for position, row in enumerate(table.to_dict(orient="records")):
        error = [[row["ndcg"] - row["ci_low"]], [row["ci_high"] - row["ndcg"]]]
        ax.errorbar(
            [row[throughput]], [row["ndcg"]], yerr=error, marker=markers[position % len(markers)],
            color=PALETTE[position % len(PALETTE)], capsize=2, ls="none", label=row["setting"],
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    clock = "wall clock" if throughput == "items_per_s" else "CPU time"
    ax.set_xlabel(f"encoding throughput (items/s, {clock}, log scale)")
    ax.set_ylabel(f"NDCG@{int(table['k'].iloc[0])} (95% CI)")
    ax.set_title("Text encoder: cost and quality")
    ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


SERVING_NAMESPACE = "serving_benchmark"  # feature-cache namespace that measure_serving_path empties and refills


def measure_serving_path(
    items: pd.DataFrame,
    history: pd.DataFrame,
    *,
    setting: EncoderSetting = DEFAULT_SETTINGS[0],
    model_name_or_path=None,
    cache_folder=None,
    k: int = 10,
    n_requests: int = 200,
    num_threads: int | None = None,
    seed: int = DEFAULT_SEED,
) -> dict:
    """Time the default serving path: encode the catalog once, reload it from the cache, serve requests.

    1. :func:`~vidrec_lab.features.text.encode_items` into the feature cache
       namespace :data:`SERVING_NAMESPACE`, emptied first so that this is a
       cache miss and the whole catalog is encoded;
    2. the same call with a new, unloaded encoder of the same setting, as a
       restarted server would make: a cache hit, vectors are read from disk
       and the model is not loaded;
    3. :func:`measure_serving_latency` on a :class:`ServingIndex` of those vectors.

    Args:
        items (pandas.DataFrame): Item table (the catalog).
        history (pandas.DataFrame): Interactions the requests read (e.g. ``split.history("test")``).
        setting (EncoderSetting): Encoder setting; default float32.
        model_name_or_path (str, optional): Encoder; default all-MiniLM-L6-v2.
        cache_folder (path-like, optional): Feature cache root; default the project cache.
        k (int): List length per request.
        n_requests (int): Timed requests.
        num_threads (int, optional): PyTorch CPU threads while encoding.
        seed (int): Seed of the request users.

    Returns:
        dict: ``first_encode_s`` and ``cached_load_s`` (seconds for the whole
        catalog), ``model_loaded_on_cache_hit`` (False when every vector came
        from the cache), and the :func:`measure_serving_latency` numbers.
    """
    from vidrec_lab.features.cache import FeatureCache
    from vidrec_lab.features.text import encode_items

    cache = FeatureCache(cache_folder)
    cache.clear(SERVING_NAMESPACE)

    def timed_encode() -> tuple[float, CompactTextEncoder, np.ndarray, np.ndarray]:
        encoder = CompactTextEncoder(setting, model_name_or_path, num_threads=num_threads, progress=False)
        started = time.perf_counter()
        item_ids, vectors = encode_items(items, encoder, cache=cache, namespace=SERVING_NAMESPACE)
        return time.perf_counter() - started, encoder, item_ids, vectors

    first, _, _, _ = timed_encode()
    cached, restarted, item_ids, vectors = timed_encode()
    latency = measure_serving_latency(ServingIndex(item_ids, vectors), history, k=k, n_requests=n_requests, seed=seed)
    return {"first_encode_s": first, "cached_load_s": cached, "model_loaded_on_cache_hit": restarted.is_loaded, **latency}
