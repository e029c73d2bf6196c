import math

import numpy as np
import pandas as pd
import pytest
import torch

from vidrec_lab.config import get_profile
from vidrec_lab.models.two_tower import (
    ItemTower,
    SequenceDataModule,
    TwoTowerConfig,
    TwoTowerRecommender,
    UserTower,
    _training_windows,
    bpr_loss,
    item_content_features,
    logq_corrected_logits,
    plot_learning_curves,
    sampled_softmax_loss,
    similarity,
    time_ordered_items,
)

# Small settings that train in about a second per epoch on one thread.
TINY = dict(dim=16, hidden_dim=32, max_len=8, n_layers=1, n_heads=2, batch_size=16, patience=2, dropout=0.1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _chain_data(n_users: int = 24, n_items: int = 12, length: int = 7, seed: int = 0):
    """Users walk a cycle of items (i -> i+1); item content is a one-hot of the item's position mod 4."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(length):
            rows.append((f"u{u}", f"i{(start + t) % n_items}", 1000 * u + t))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    content = np.zeros((n_items, 4), dtype=np.float32)
    content[np.arange(n_items), np.arange(n_items) % 4] = 1.0
    return interactions, items, content


def _leave_last_out(interactions):
    from vidrec_lab.splits import leave_last_out

    return leave_last_out(interactions)


# -- towers -----------------------------------------------------------------


def _item_tower(n_items=6, warm=None, use_item_ids=True, item_id_dropout=0.0):
    torch.manual_seed(0)
    features = {"text": torch.randn(n_items, 5), "genre": torch.eye(n_items, 3)}
    masks = {"text": torch.ones(n_items, dtype=torch.bool), "genre": torch.tensor([True] * (n_items - 1) + [False])}
    warm = torch.ones(n_items, dtype=torch.bool) if warm is None else warm
    return ItemTower(features, masks, warm, dim=8, hidden_dim=16, use_item_ids=use_item_ids, item_id_dropout=item_id_dropout)


def test_item_tower_shapes():
    tower = _item_tower().eval()
    assert tower(torch.arange(6)).shape == (6, 8)
    assert tower(torch.tensor([[0, 1, 2], [3, 4, 5]])).shape == (2, 3, 8)


@pytest.mark.parametrize("encoder", ["transformer", "mean"])
def test_user_tower_shapes(encoder):
    tower = UserTower(8, max_len=5, encoder=encoder, n_layers=2, n_heads=2, n_users=4).eval()
    out = tower(torch.randn(3, 5, 8), torch.tensor([5, 2, 0]), torch.tensor([1, 2, 0]))
    assert out.shape == (3, 6, 8)
    assert torch.isfinite(out).all()


def test_user_tower_rejects_long_history():
    tower = UserTower(8, max_len=3)
    with pytest.raises(ValueError, match="history has 4 items; at most max_len=3"):
        tower(torch.randn(1, 4, 8), torch.tensor([4]))


@pytest.mark.parametrize("encoder", ["transformer", "mean"])
def test_user_tower_is_causal(encoder):
    torch.manual_seed(0)
    tower = UserTower(8, max_len=6, encoder=encoder, n_layers=2, n_heads=2, dropout=0.0).eval()
    history = torch.randn(1, 6, 8)
    changed = history.clone()
    changed[:, 3:] = torch.randn(1, 3, 8)  # items 4..6 change
    lengths = torch.tensor([6])
    a, b = tower(history, lengths), tower(changed, lengths)
    # Position t has read t items: positions 0..3 saw only items 1..3, which did not change.
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    # Padding after a short history does not reach the real positions either.
    padded = tower(torch.cat([history[:, :2], torch.randn(1, 4, 8)], dim=1), torch.tensor([2]))
    torch.testing.assert_close(padded[:, :3], a[:, :3])


def test_cold_item_uses_content_only():
    warm = torch.tensor([True, True, True, False, False, True])
    tower = _item_tower(warm=warm).eval()
    with torch.no_grad():
        tower.id_embedding.weight.fill_(100.0)
    items = torch.arange(6)
    vectors = tower(items)
    content = tower.content(items)
    torch.testing.assert_close(vectors[3:5], content[3:5])
    torch.testing.assert_close(vectors[warm], content[warm] + 100.0)


def test_item_id_dropout_masks_only_in_training():
    tower = _item_tower(item_id_dropout=0.5)
    torch.manual_seed(1)
    kept = tower.train().id_keep(torch.zeros(2000, dtype=torch.long))
    assert 0.4 < float(kept.mean()) < 0.6
    assert float(tower.eval().id_keep(torch.zeros(10, dtype=torch.long)).min()) == 1.0


# -- losses -----------------------------------------------------------------


def test_logq_correction_hand_computed():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    log_q = torch.log(torch.tensor([0.5, 0.25]))
    corrected = logq_corrected_logits(logits, log_q)
    expected = torch.tensor([[2.0 + math.log(2), 1.0 + math.log(4)], [0.0 + math.log(2), 3.0 + math.log(4)]])
    torch.testing.assert_close(corrected, expected)
    # Row 0 (positive: column 0): -log(e^(2+ln2) / (e^(2+ln2) + e^(1+ln4))) = -log(2e^2 / (2e^2 + 4e)).
    row0 = -math.log(2 * math.e**2 / (2 * math.e**2 + 4 * math.e))
    row1 = -math.log(4 * math.e**3 / (2 + 4 * math.e**3))
    loss = sampled_softmax_loss(logits, torch.tensor([0, 1]), log_q=log_q)
    assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_sampled_softmax_appends_extra_negatives():
    logits = torch.tensor([[1.0, 0.0]])
    loss = sampled_softmax_loss(logits, torch.tensor([0]), extra_logits=torch.tensor([[2.0]]))
    assert float(loss) == pytest.approx(-math.log(math.e / (math.e + 1 + math.e**2)), rel=1e-6)


def test_bpr_loss_hand_computed():
    positive = torch.tensor([1.0, 0.5])
    negative = torch.tensor([[0.0, 2.0], [0.5, 9.0]])
    valid = torch.tensor([[True, True], [True, False]])
    # Pairs kept: 1-0, 1-2, 0.5-0.5; -log sigmoid(x) = log(1 + e^-x).
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1)) + math.log(2)) / 3
    assert float(bpr_loss(positive, negative, valid)) == pytest.approx(expected, rel=1e-6)
    assert float(bpr_loss(positive[:1], negative[:1])) == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2, rel=1e-6)


def test_similarity_temperature_and_cosine():
    users = torch.tensor([[3.0, 4.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(similarity(users, items, temperature=0.5), torch.tensor([[6.0, 16.0]]))
    torch.testing.assert_close(similarity(users, items, normalize=True, temperature=0.1), torch.tensor([[6.0, 8.0]]))


# -- data -------------------------------------------------------------------


def test_time_order_breaks_ties_numerically():
    table = pd.DataFrame(
        {"user_id": ["a"] * 4 + ["b"], "item_id": ["10", "9", "2", "9", "2"], "timestamp": [5, 5, 7, 9, 1]}
    )
    index = {"2": 0, "9": 1, "10": 2}
    sequences = time_ordered_items(table, index)
    # Items 9 and 10 tie at t=5 (9 first, numerically); the repeat of 9 at t=9 keeps its first time.
    assert sequences["a"].tolist() == [1, 2, 0]
    assert sequences["b"].tolist() == [0]
    assert time_ordered_items(table.iloc[::-1], index)["a"].tolist() == [1, 2, 0]


def test_training_windows_cover_every_target_once():
    sequence = np.arange(8)
    windows = _training_windows(sequence, max_len=3)
    assert [(w.tolist(), first) for w, first in windows] == [
        ([4, 5, 6, 7], False),
        ([1, 2, 3, 4], False),
        ([0, 1], True),
    ]
    # First targets of later windows are unused, so the targets are 0..7 exactly once.
    targets = sorted(t for w, first in windows for t in (w.tolist() if first else w[1:].tolist()))
    assert targets == list(range(8))


def test_datamodule_batches_and_validation_rows():
    interactions, items, _ = _chain_data(n_users=3, length=5)
    split = _leave_last_out(interactions)
    index = {item: i for i, item in enumerate(items.item_id)}
    data = SequenceDataModule(split.train, index, valid=split.valid, max_len=2, batch_size=4, seed=3)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["history"].shape[1] + 1 == batch["targets"].shape[1]
    assert (batch["lengths"] <= 2).all()
    assert len(data.val_dataset) == 3
    user, history, target, seen = data.val_dataset[0]
    assert len(history) == 2
    assert len(seen) == 3
    assert target not in seen.tolist()
    assert data.target_counts().sum() == len(split.train)


# -- recommender ------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_model():
    torch.set_num_threads(1)
    interactions, items, content = _chain_data()
    split = _leave_last_out(interactions)
    model = TwoTowerRecommender({"content": content}, progress_bar=False, max_epochs=3, seed=7, **TINY)
    model.fit(split.train, items, valid=split.valid)
    return model, split, items, content


def test_learning_curves_table(chain_model):
    model = chain_model[0]
    assert list(model.history_.columns) == ["epoch", "train_loss", "val_loss", "val_ndcg@10", "val_recall@10", "elapsed_s"]
    assert model.history_["epoch"].tolist() == [0, 1, 2]
    assert model.history_["train_loss"].notna().all()
    assert model.history_["val_ndcg@10"].between(0, 1).all()
    assert model.best_epoch_ == int(model.history_["val_ndcg@10"].idxmax())
    ax = plot_learning_curves(model.history_)
    assert ax.get_ylabel() == "train loss"


def test_recommend_excludes_given_history(chain_model):
    model, split, _, _ = chain_model
    history = split.history("test")
    users = sorted(split.test.user_id.unique())
    recs = model.recommend(users, k=5, history=history)
    seen = set(zip(history.user_id, history.item_id))
    assert not any((u, i) in seen for u, i in zip(recs.user_id, recs.item_id))
    assert recs.groupby("user_id").size().eq(5).all()


def test_user_vector_follows_time_order(chain_model):
    model = chain_model[0]
    history = pd.DataFrame({"user_id": ["x"] * 3, "item_id": ["i1", "i2", "i3"], "timestamp": [1, 2, 3]})
    shuffled = history.iloc[[2, 0, 1]]
    reversed_time = history.assign(timestamp=[3, 2, 1])
    a = model.user_vectors(["x"], history)
    np.testing.assert_allclose(model.user_vectors(["x"], shuffled), a, rtol=1e-6)
    assert not np.allclose(model.user_vectors(["x"], reversed_time), a)


def test_empty_history_gets_begin_of_sequence_vector(chain_model):
    model = chain_model[0]
    empty = model.user_vectors(["nobody", "also_nobody"])
    np.testing.assert_allclose(empty[0], empty[1])
    module = model.module_
    with torch.no_grad():
        expected = module.user_tower(torch.zeros(1, 0, model.config.dim), torch.tensor([0]))[0, 0].numpy()
    np.testing.assert_allclose(empty[0], expected, rtol=1e-5, atol=1e-6)
    recs = model.recommend(["nobody"], k=3)
    assert len(recs) == 3
    assert np.isfinite(recs.score).all()


def test_score_matches_user_and_item_vectors(chain_model):
    model, split, _, _ = chain_model
    users = ["u0", "u5"]
    scores = model.score(users, history=split.history("test"))
    expected = model.user_vectors(users, split.history("test")) @ model.item_vectors().T
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_same_seed_gives_identical_results():
    interactions, items, content = _chain_data(n_users=12)
    split = _leave_last_out(interactions)

    def run(seed):
        model = TwoTowerRecommender({"content": content}, progress_bar=False, max_epochs=2, seed=seed, **TINY)
        model.fit(split.train, items, valid=split.valid)
        return model.history_.drop(columns="elapsed_s"), model.score(["u0", "u1"], history=split.history("test"))

    torch.manual_seed(123)
    outside = torch.rand(1)
    (h1, s1), (h2, s2), (h3, s3) = run(5), run(5), run(6)
    pd.testing.assert_frame_equal(h1, h2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    # Training forks the global RNG, so the caller's random stream is unchanged.
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), outside)


def test_cold_items_scored_from_content_only():
    interactions, items, content = _chain_data()
    cold = ["i3", "i7"]
    train = interactions[~interactions.item_id.isin(cold)]
    model = TwoTowerRecommender({"content": content}, progress_bar=False, max_epochs=1, seed=1, **TINY).fit(train, items)
    assert model.scores_cold_items
    assert model.train_items_.tolist() == [item not in cold for item in items.item_id]
    before = model.score(["u1"], cold)
    assert np.isfinite(before).all()
    # Changing the cold items' ID embedding rows changes nothing: they are masked.
    with torch.no_grad():
        model.module_.item_tower.id_embedding.weight[[3, 7]] = 50.0
    model.item_vectors(refresh=True)
    np.testing.assert_allclose(model.score(["u1"], cold), before)
    recs = model.recommend(["u1", "u2"], k=2, candidates=cold)
    assert set(recs.item_id) <= set(cold)
    assert len(recs) == 4


def test_add_items_after_training(chain_model):
    model, split, items, content = chain_model
    model_items = list(model.item_ids_)
    try:
        model.add_items(["新视频"], {"content": content[:1] * 2})
        scores = model.score(["u0"], ["新视频", "i0"])
        assert np.isfinite(scores).all()
        assert not model.train_items_[-1]
        # Content-only vector: the MLP output of the new row.
        with torch.no_grad():
            expected = model.module_.item_tower.content(torch.tensor([len(model_items)])).numpy()[0]
        np.testing.assert_allclose(model.item_vectors()[-1], expected, rtol=1e-5, atol=1e-6)
        recs = model.recommend(["u0"], k=1, candidates=["新视频"])
        assert recs.item_id.tolist() == ["新视频"]
        with pytest.raises(ValueError, match="item 'i0' is already in the catalog"):
            model.add_items(["i0"], {"content": content[:1]})
        with pytest.raises(ValueError, match=r"exactly the fitted modalities \['content'\]"):
            model.add_items(["n2"], {"text": content[:1]})
    finally:
        tower = model.module_.item_tower
        n = len(model_items)
        tower.feature_content, tower.mask_content, tower.warm = tower.feature_content[:n], tower.mask_content[:n], tower.warm[:n]
        model.item_ids_ = model_items
        model.item_index_ = {item: i for i, item in enumerate(model_items)}
        model.train_items_ = model.train_items_[:n]
        model.item_vectors(refresh=True)


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "sampled_softmax", "logq_correction": True, "hard_negatives": 2, "hard_negative_pool": 6},
        {"loss": "bpr", "n_negatives": 3, "hard_negatives": 1, "hard_negative_pool": 5},
        {"loss": "full_softmax", "user_encoder": "mean", "use_user_ids": True, "normalize": True, "temperature": 0.1},
        {"fusion": "gated", "fusion_dim": 8, "use_item_ids": False, "lr_schedule": "cosine"},
    ],
)
def test_loss_and_tower_options_train(settings):
    interactions, items, content = _chain_data(n_users=8)
    split = _leave_last_out(interactions)
    options = {**TINY, **settings}
    model = TwoTowerRecommender({"content": content}, progress_bar=False, fast_dev_run=True, **options)
    model.fit(split.train, items, valid=split.valid)
    assert np.isfinite(model.history_["train_loss"]).all()
    assert np.isfinite(model.score(["u0"], history=split.history("test"))).all()


def test_from_profile_takes_budget():
    model = TwoTowerRecommender.from_profile("smoke", {"x": np.eye(2)})
    assert model.config.fast_dev_run is True
    assert model.config.max_epochs == 1
    assert TwoTowerRecommender.from_profile("fast", {"x": np.eye(2)}).config.max_epochs == get_profile("fast").recommender_epochs
    assert TwoTowerRecommender.from_profile("fast", {"x": np.eye(2)}, max_epochs=3).config.max_epochs == 3


def test_short_training_beats_popularity_on_synthetic():
    from vidrec_lab.datasets import make_synthetic
    from vidrec_lab.fusion import genre_labels
    from vidrec_lab.models.baselines import MostPopular
    from vidrec_lab.splits import leave_last_out

    data = make_synthetic(n_users=150, n_items=120, n_topics=6, interactions_per_user=(15, 30), noise=0.05, seed=3)
    genres, _ = genre_labels(data.items)
    split = leave_last_out(data.interactions, items=data.items)
    settings = {**TINY, "max_len": 20, "batch_size": 32}
    model = TwoTowerRecommender({"genre": genres}, progress_bar=False, max_epochs=8, seed=0, **settings)
    model.fit(split.train, data.items, valid=split.valid)
    popular = MostPopular().fit(split.train, data.items)

    def ndcg(recommender):
        users = sorted(split.test.user_id.unique())
        recs = recommender.recommend(users, k=10, history=split.history("test"))
        target = dict(zip(split.test.user_id, split.test.item_id))
        hits = recs[recs.item_id == recs.user_id.map(target)]
        return float((1 / np.log2(hits["rank"] + 1)).sum() / len(users))

    two_tower, baseline = ndcg(model), ndcg(popular)
    assert two_tower > baseline + 0.02, (two_tower, baseline)


def test_finetunes_last_layer_of_tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog", "video", "猫", "狗", "视", "频"]
    BertTokenizer(vocab={word: i for i, word in enumerate(words)}).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path)

    interactions, items, _ = _chain_data(n_users=8, n_items=6)
    texts = pd.Series(["cat video", "dog video", "猫视频", "狗视频", "cat dog", "视频"], index=items.item_id)
    split = _leave_last_out(interactions)
    model = TwoTowerRecommender(
        text_encoder=str(tmp_path), item_texts=texts, finetune_layers=1, progress_bar=False, max_epochs=1, encoder_lr=1e-2, **TINY
    )
    model.fit(split.train, items, valid=split.valid)
    tuned = model.module_.item_tower.text_encoder
    original = BertModel.from_pretrained(tmp_path)
    first = "encoder.layer.0.attention.self.query.weight"
    last = "encoder.layer.1.attention.self.query.weight"
    torch.testing.assert_close(tuned.encoder.state_dict()[first], original.state_dict()[first])
    assert not torch.allclose(tuned.encoder.state_dict()[last], original.state_dict()[last])
    # Chinese texts are tokenised to their characters, not to [UNK].
    assert 1 not in tuned.input_ids[2][tuned.attention_mask[2].bool()].tolist()
    assert np.isfinite(model.score(["u0"], history=split.history("test"))).all()


# -- input errors -----------------------------------------------------------


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match=r"loss must be one of \['full_softmax', 'sampled_softmax', 'bpr'\]; got 'hinge'"):
        TwoTowerConfig(loss="hinge").validate()
    with pytest.raises(ValueError, match="dim 10 is not divisible by n_heads 4"):
        TwoTowerConfig(dim=10, n_heads=4).validate()
    with pytest.raises(ValueError, match="hard_negatives apply to sampled_softmax and bpr"):
        TwoTowerConfig(loss="full_softmax", hard_negatives=2).validate()
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got 1.5"):
        TwoTowerConfig(dropout=1.5).validate()
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['epochs'\]"):
        TwoTowerRecommender({"x": np.eye(2)}, epochs=3)
    with pytest.raises(ValueError, match="pass item_features"):
        TwoTowerRecommender()
    with pytest.raises(ValueError, match="finetune_layers=2 needs a text_encoder"):
        TwoTowerRecommender({"x": np.eye(2)}, finetune_layers=2)


def test_fit_rejects_misaligned_features():
    interactions, items, content = _chain_data(n_users=4)
    with pytest.raises(ValueError, match=r"feature 'content' has shape \(11, 4\); expected \(12, dim\)"):
        TwoTowerRecommender({"content": content[:11]}, progress_bar=False, **TINY).fit(interactions, items)
    partial = content.copy()
    partial[2, 1] = np.nan
    with pytest.raises(ValueError, match="feature 'content' of item 'i2' is partly NaN"):
        TwoTowerRecommender({"content": partial}, progress_bar=False, **TINY).fit(interactions, items)
    missing = content.copy()
    missing[5] = np.nan
    with pytest.raises(ValueError, match="item 'i5' has no content feature"):
        TwoTowerRecommender({"content": missing}, progress_bar=False, **TINY).fit(interactions, items)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['timestamp'\]"):
        TwoTowerRecommender({"content": content}, **TINY).fit(interactions.drop(columns="timestamp"), items)


def test_features_from_dataframe_by_item_id():
    interactions, items, content = _chain_data(n_users=6)
    frame = pd.DataFrame(content, index=items.item_id).iloc[::-1]
    frame = frame.drop(index="i4")  # i4 lacks this modality: only the second one describes it
    other = np.ones((12, 2), dtype=np.float32)
    model = TwoTowerRecommender({"content": frame, "other": other}, progress_bar=False, fast_dev_run=True, **TINY)
    model.fit(interactions, items)
    tower = model.module_.item_tower
    np.testing.assert_array_equal(tower.feature_content.numpy()[[0, 5]], content[[0, 5]])
    assert tower.mask_content.tolist() == [item != "i4" for item in items.item_id]


def test_item_content_features_builds_each_modality():
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "genres": [["Drama"], ["Comedy", "Drama"], [], ["剧情"]],
            "year": [1990, 1995, None, 2001],
        }
    )
    text = np.arange(8, dtype=np.float32).reshape(4, 2)
    features = item_content_features(items, text, year_bins=2)
    assert sorted(features) == ["genre", "text", "year"]
    np.testing.assert_array_equal(features["text"], text)
    # Genre columns are sorted names: Comedy, Drama, 剧情.
    np.testing.assert_array_equal(features["genre"], [[0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]])
    # Two bins split at the median year 1995: 1990 -> bin 0, 1995 and 2001 -> bin 1; no year -> NaN row.
    np.testing.assert_array_equal(features["year"][[0, 1, 3]], [[1, 0], [0, 1], [0, 1]])
    assert np.isnan(features["year"][2]).all()
    with pytest.raises(ValueError, match=r"text has shape \(3, 2\); expected \(4, dim\)"):
        item_content_features(items, text[:3])


def test_cosine_schedule_ends_at_tenth_of_lr():
    interactions, items, content = _chain_data(n_users=8)
    model = TwoTowerRecommender({"content": content}, progress_bar=False, max_epochs=2, lr=0.01, lr_schedule="cosine", **TINY)
    model.fit(interactions, items)
    assert model.module_.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001)


def test_pickle_round_trip_keeps_scores(chain_model):
    import pickle

    model, split, _, _ = chain_model
    restored = pickle.loads(pickle.dumps(model))
    history = split.history("test")
    np.testing.assert_array_equal(restored.score(["u0", "u3"], history=history), model.score(["u0", "u3"], history=history))
