"""Tests of vidrec_lab.privacy: keys, pseudonyms, the raw-id scan and DP-SGD training.

The check that no notebook writes a raw user id under pseudonymisation runs
with every notebook's smoke run, in ``test_notebooks.py``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vidrec_lab import privacy
from vidrec_lab.constants import COL_EVENT, COL_ITEM, COL_TIMESTAMP, COL_USER, COL_VALUE
from vidrec_lab.io import write_metrics
from vidrec_lab.tables import DataError, MissingColumnsError

KEY = b"0123456789abcdef-test-key"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No pseudonymisation variables, and a project home without a key file."""
    for name in ("VIDREC_LAB_PSEUDONYMIZE", "VIDREC_LAB_PSEUDONYM_KEY", "VIDREC_LAB_PSEUDONYM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("VIDREC_LAB_HOME", str(home))
    return home


# --------------------------------------------------------------------------- switch and keys


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("on", True), ("", False), ("0", False), ("off", False)])
def test_enabled_reads_variable(clean_env, monkeypatch, value, expected):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", value)
    assert privacy.enabled() is expected


def test_enabled_rejects_typo(clean_env, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "yes please")
    with pytest.raises(ValueError, match=r"VIDREC_LAB_PSEUDONYMIZE is 'yes please'; expected one of"):
        privacy.enabled()


def test_load_key_without_configuration_names_options(clean_env):
    with pytest.raises(privacy.PseudonymKeyError, match=r"VIDREC_LAB_PSEUDONYM_KEY.*VIDREC_LAB_PSEUDONYM_KEY_FILE.*pseudonym\.key"):
        privacy.load_key()


def test_load_key_from_environment(clean_env, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", KEY.decode())
    assert privacy.load_key() == KEY


def test_load_key_rejects_short_secret(clean_env, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", "short")
    with pytest.raises(privacy.PseudonymKeyError, match=r"has 5 bytes; use at least 16"):
        privacy.load_key()


def test_load_key_from_named_file(clean_env, monkeypatch, tmp_path):
    path = tmp_path / "secret.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY_FILE", str(path))
    assert privacy.load_key() == KEY


def test_load_key_missing_named_file(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(privacy.PseudonymKeyError, match=r"absent\.key .*does not exist"):
        privacy.load_key()


def test_load_key_creates_default_file_on_request(clean_env):
    key = privacy.load_key(create=True)
    path = clean_env / "data" / "pseudonym.key"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 2 * privacy.KEY_FILE_BYTES  # hex text
    assert privacy.load_key() == key  # read back, not created again


def test_create_key_file_keeps_existing_key(clean_env):
    path = privacy.create_key_file()
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        privacy.create_key_file()
    assert path.read_bytes() == before
    privacy.create_key_file(overwrite=True)
    assert path.read_bytes() != before


# --------------------------------------------------------------------------- pseudonyms


def test_pseudonymize_id_is_truncated_hmac():
    expected = "u_" + hmac.new(KEY, "u_\x1f196".encode(), hashlib.sha256).hexdigest()[:12]
    assert privacy.pseudonymize_id("196", KEY) == expected
    assert privacy.pseudonymize_id(196, KEY) == expected


def test_pseudonymize_id_depends_on_key_and_prefix():
    user = privacy.pseudonymize_id("7", KEY)
    assert privacy.pseudonymize_id("7", KEY + b"x") != user
    item = privacy.pseudonymize_id("7", KEY, prefix="i_")
    assert item.startswith("i_")
    assert item[2:] != user[2:]


def test_pseudonymize_id_rejects_bad_length():
    with pytest.raises(ValueError, match=r"from 4 to 64 hex digits; got 2"):
        privacy.pseudonymize_id("1", KEY, length=2)


def test_pseudonymize_table_replaces_ids_consistently():
    table = pd.DataFrame({COL_USER: ["1", "2", "1", "张三"], COL_ITEM: ["a", "b", "c", "d"], "title": ["x", "y", "z", "中文标题"]})
    out = privacy.pseudonymize_table(table, key=KEY)
    assert out[COL_USER].tolist() == [privacy.pseudonymize_id(u, KEY) for u in ["1", "2", "1", "张三"]]
    assert out.loc[0, COL_USER] == out.loc[2, COL_USER]
    assert out[COL_ITEM].tolist() == ["a", "b", "c", "d"]
    assert out["title"].tolist() == ["x", "y", "z", "中文标题"]
    assert table[COL_USER].tolist() == ["1", "2", "1", "张三"]  # input unchanged


def test_pseudonymize_table_items_and_index():
    table = pd.DataFrame({COL_ITEM: ["10", "11"], "n": [3, 4]}, index=pd.Index([5, 6], name=COL_USER))
    out = privacy.pseudonymize_table(table, [COL_USER, COL_ITEM], key=KEY)
    assert out.index.tolist() == [privacy.pseudonymize_id("5", KEY), privacy.pseudonymize_id("6", KEY)]
    assert out.index.name == COL_USER
    assert out[COL_ITEM].tolist() == [privacy.pseudonymize_id(i, KEY, prefix="i_") for i in ["10", "11"]]


def test_pseudonymize_table_missing_column():
    with pytest.raises(MissingColumnsError, match=r"missing column\(s\) \['user_id'\]; found \['item_id'\]"):
        privacy.pseudonymize_table(pd.DataFrame({COL_ITEM: ["1"]}), key=KEY)


def test_pseudonymize_table_empty_id():
    with pytest.raises(DataError, match=r"column 'user_id' is empty at row 1"):
        privacy.pseudonymize_table(pd.DataFrame({COL_USER: ["1", None]}), key=KEY)


def test_pseudonymize_table_detects_collisions():
    table = pd.DataFrame({COL_USER: [str(i) for i in range(3000)]})
    with pytest.raises(DataError, match=r"3000 distinct 'user_id' values give colliding pseudonyms at length 4"):
        privacy.pseudonymize_table(table, key=KEY, length=4)


def test_export_table_follows_switch(clean_env, monkeypatch):
    table = pd.DataFrame({COL_USER: ["1"], COL_ITEM: ["9"]})
    assert privacy.export_table(table) is table
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "1")
    with pytest.raises(privacy.PseudonymKeyError):
        privacy.export_table(table)
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", KEY.decode())
    assert privacy.export_table(table)[COL_USER].tolist() == [privacy.pseudonymize_id("1", KEY)]
    no_users = pd.DataFrame({COL_ITEM: ["9"]})
    assert privacy.export_table(no_users) is no_users


def test_export_id_follows_switch_and_matches_export_table(clean_env, monkeypatch):
    assert privacy.export_id(196) == "196"
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "1")
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", KEY.decode())
    table = privacy.export_table(pd.DataFrame({COL_USER: ["196"], "score": [0.5]}))
    assert privacy.export_id(196) == table[COL_USER].iloc[0] == privacy.pseudonymize_id("196", KEY)


def test_write_metrics_pseudonymizes_user_fields(clean_env, monkeypatch, tmp_path):
    per_user = pd.DataFrame({COL_USER: ["196", "186"], "ndcg": [0.5, 0.25]})
    metrics = {"table": [{"model": "EASE", "value": 0.1}], "per_user": per_user.to_dict(orient="records"), "frame": per_user}
    plain = json.loads(write_metrics("plain", metrics, params={COL_USER: "196"}, folder=tmp_path).read_text())
    assert [r[COL_USER] for r in plain["metrics"]["per_user"]] == ["196", "186"]

    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "1")
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", KEY.decode())
    payload = json.loads(write_metrics("private", metrics, params={COL_USER: "196", "seed": 3}, folder=tmp_path).read_text())
    expected = [privacy.pseudonymize_id(u, KEY) for u in ["196", "186"]]
    assert [r[COL_USER] for r in payload["metrics"]["per_user"]] == expected
    assert list(payload["metrics"]["frame"][COL_USER].values()) == expected
    assert payload["metrics"]["table"] == [{"model": "EASE", "value": 0.1}]
    assert payload["params"] == {COL_USER: expected[0], "seed": 3}
    assert privacy.scan_for_raw_ids(tmp_path, ["196", "186"]) == [
        (tmp_path / "plain.json", "186"), (tmp_path / "plain.json", "196"),
    ]


# --------------------------------------------------------------------------- raw-id scan


def _png_with_text(path: Path, text: str) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1")) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _notebook(outputs: list[dict], source: str = "x = 1") -> dict:
    return {"cells": [{"cell_type": "code", "source": [source], "outputs": outputs, "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_scan_numeric_ids_only_in_id_contexts(tmp_path):
    ids = ["7", "42", "196", "308", "555", "901", "902", "903"]
    # JSON: user_id fields (nested and listed) and user-keyed maps are flagged; other numbers are not.
    (tmp_path / "metrics.json").write_text(json.dumps({
        "params": {"seed": 42, "k": 7, "n_users": 943},
        "metrics": [{"model": "EASE", COL_USER: "196", "value": 0.5}, {COL_USER: [308]}],
        "user_preferences": {"555": [0.1]},
    }))
    # CSV: only the user_id column counts.
    (tmp_path / "recs.csv").write_text("user_id,item_id,rank\n901,42,7\n")
    # A log line names a user.
    (tmp_path / "run.log").write_text("fitted EASE on 42 users\nrecommend for user 902 done\n")
    executed = _notebook([
        {"output_type": "execute_result", "data": {
            "text/plain": ["   user_id  item_id\n", "0      903        7\n"],
            "text/html": ["<table><thead><tr><th></th><th>user_id</th><th>item_id</th></tr></thead>",
                          "<tbody><tr><th>0</th><td>903</td><td>42</td></tr></tbody></table>"],
        }, "metadata": {}, "execution_count": 1},
    ])
    (tmp_path / "nb.ipynb").write_text(json.dumps(executed))
    hits = privacy.scan_for_raw_ids(tmp_path, ids)
    assert hits == [
        (tmp_path / "metrics.json", "196"),
        (tmp_path / "metrics.json", "308"),
        (tmp_path / "metrics.json", "555"),
        (tmp_path / "nb.ipynb", "903"),
        (tmp_path / "recs.csv", "901"),
        (tmp_path / "run.log", "902"),
    ]


def test_scan_plain_table_index_and_series(tmp_path):
    text = "         count\nuser_id       \n405        737\n655        685\n\n0    12\n1    13\nName: user_id, dtype: int64\n"
    (tmp_path / "out.txt").write_text(text)
    hits = privacy.scan_for_raw_ids(tmp_path, ["405", "655", "737", "12", "13", "0"])
    assert [h.user_id for h in hits] == ["12", "13", "405", "655"]


def test_scan_distinctive_ids_anywhere(tmp_path):
    (tmp_path / "notes.md").write_text("Top users: u0042, u0100.\nu00420 and xu0007 are other tokens; \\u0007 is an escape\n")
    (tmp_path / "cache.npz").write_bytes(b"\x00\x01u0042\x00")  # binary: skipped
    hits = privacy.scan_for_raw_ids(tmp_path, ["u0042", "u0100", "u0007"])
    assert hits == [(tmp_path / "notes.md", "u0042"), (tmp_path / "notes.md", "u0100")]


def test_scan_figures_pdf_and_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from vidrec_lab import viz

    # Start from the suite's own figure style: other tests change matplotlib's global settings.
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        viz.set_style()
        fig, ax = viz.new_axes()
        ax.plot([0, 1], [0, 7])
        ax.set_title("Scores of user 42 and u0099 (用户)")
        viz.save_figure(fig, "scores", folder=tmp_path, formats=("pdf",))
    _png_with_text(tmp_path / "meta.png", "made for u0100")
    hits = privacy.scan_for_raw_ids(tmp_path, ["7", "42", "u0099", "u0100", "u0101"])
    assert hits == [(tmp_path / "meta.png", "u0100"), (tmp_path / "scores.pdf", "42"), (tmp_path / "scores.pdf", "u0099")]


def test_scan_reads_notebook_images_as_png(tmp_path):
    import base64

    _png_with_text(tmp_path / "tagged.png", "user u07 top 10")
    tagged = base64.b64encode((tmp_path / "tagged.png").read_bytes()).decode()
    (tmp_path / "tagged.png").unlink()
    # Base64 text that happens to contain the token "u02" must not count as an id.
    chance = "iVBORw0KGgo/u02/AAAA"
    executed = _notebook([
        {"output_type": "display_data", "data": {"image/png": chance, "text/plain": ["<Figure>"]}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/png": tagged}, "metadata": {}},
    ])
    (tmp_path / "nb.ipynb").write_text(json.dumps(executed))
    assert privacy.scan_for_raw_ids(tmp_path, ["u02", "u07"]) == [(tmp_path / "nb.ipynb", "u07")]


def test_scan_rejects_missing_folder_and_empty_ids(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent does not exist"):
        privacy.scan_for_raw_ids(tmp_path / "absent", ["1"])
    with pytest.raises(ValueError, match=r"user_ids is empty"):
        privacy.scan_for_raw_ids(tmp_path, [])


# --------------------------------------------------------------------------- DP model


def _interactions(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame({
        COL_USER: [r[0] for r in rows], COL_ITEM: [r[1] for r in rows], COL_TIMESTAMP: [r[2] for r in rows],
        COL_EVENT: "view", COL_VALUE: 1.0,
    })


def test_dp_config_validation():
    with pytest.raises(ValueError, match=r"DPConfig: batch_size must be a positive integer; got 0"):
        privacy.DPConfig(batch_size=0).validate()
    with pytest.raises(ValueError, match=r"accountant must be one of \['prv', 'rdp', 'gdp'\]; got 'moments'"):
        privacy.DPConfig(accountant="moments").validate()
    with pytest.raises(ValueError, match=r"content_dim must be a positive integer or None; got 0"):
        privacy.DPConfig(content_dim=0).validate()


def test_first_time_sequences_order_and_duplicates():
    train = _interactions([("b", "10", 5), ("a", "9", 1), ("a", "10", 1), ("a", "9", 3), ("b", "2", 1)])
    index = {"2": 0, "9": 1, "10": 2}
    users, sequences = privacy._first_time_sequences(train, index)
    assert users == ["a", "b"]
    # a: 9 and 10 tie at t=1 and sort numerically (9 before 10); the repeat of 9 is dropped.
    assert [s.tolist() for s in sequences] == [[1, 2], [0, 2]]


def test_user_tower_targets_and_prefix_means():
    content = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    torch.manual_seed(0)
    model = privacy.DPUserTower(content, 4, dim=3, hidden_dim=5, use_item_ids=True, max_targets=3)
    sequences = torch.tensor([[0, 1, 2, 4, 4]])  # padded with n_items = 4
    positions, mask = model.target_positions(torch.tensor([3]), 5)
    assert positions.tolist() == [[1, 1, 2]]
    assert mask.tolist() == [[False, True, True]]
    means = privacy._content_prefix_means(model, [np.array([0, 1, 2])], 5)
    assert means[0, 1].tolist() == [1.0, 0.0]  # before item 1: item 0
    assert means[0, 2].tolist() == [0.5, 0.5]  # before item 2: items 0 and 1
    logits, targets, out_mask = model(sequences, torch.tensor([3]), means)
    assert logits.shape == (1, 3, 4)
    assert targets.tolist() == [[1, 1, 2]]
    assert out_mask.tolist() == [[False, True, True]]


def test_per_user_losses_average_within_user():
    logits = torch.zeros(2, 2, 4)  # uniform scores: every cross-entropy is log(4)
    losses = privacy._per_user_losses(logits, torch.tensor([[0, 1], [2, 3]]), torch.tensor([[True, True], [True, False]]))
    assert losses.tolist() == pytest.approx([math.log(4), math.log(4)])


def test_ghost_clipping_equals_clipped_per_user_gradients():
    from opacus import PrivacyEngine
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    torch.set_num_threads(1)
    torch.manual_seed(0)
    content = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    model = privacy.DPUserTower(content, 6, dim=4, hidden_dim=8, use_item_ids=True, max_targets=3)
    reference = copy.deepcopy(model)
    sequences = torch.tensor([[0, 1, 2, 6, 6], [3, 4, 0, 1, 2], [2, 5, 6, 6, 6]])
    lengths = torch.tensor([3, 5, 2])
    arrays = [s[:n].numpy() for s, n in zip(sequences, lengths)]
    means = privacy._content_prefix_means(model, arrays, 5)
    clip = 0.05  # small, so every user's gradient is clipped

    expected = [torch.zeros_like(p) for p in reference.parameters()]
    for row in range(3):
        reference.zero_grad()
        privacy._per_user_losses(*reference(sequences[row : row + 1], lengths[row : row + 1], means[row : row + 1]))[0].backward()
        grads = [p.grad.clone() for p in reference.parameters()]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        assert norm > clip
        for total, grad in zip(expected, grads):
            total += grad * min(1.0, clip / float(norm))

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(sequences, lengths, means), batch_size=3)
    module, optimizer, _, _ = PrivacyEngine().make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), data_loader=loader,
        noise_multiplier=0.0, max_grad_norm=clip, grad_sample_mode="ghost", poisson_sampling=False,
    )
    per_user = privacy._per_user_losses(*module(sequences, lengths, means))
    DPTensorFastGradientClipping(module, optimizer, per_user, "mean").backward()
    for parameter, total in zip(model.parameters(), expected):
        torch.testing.assert_close(parameter.grad, total, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_split():
    from vidrec_lab.datasets import make_synthetic
    from vidrec_lab.splits import leave_last_out

    dataset = make_synthetic(n_users=30, n_items=40, n_topics=4, interactions_per_user=(5, 12), seed=3)
    return dataset, leave_last_out(dataset.interactions, items=dataset.items)


def _content_vectors(dataset, dim: int = 8):
    rng = np.random.default_rng(0)
    ids = dataset.items[COL_ITEM].tolist()
    return ids, rng.normal(size=(len(ids), dim)).astype(np.float32)


def test_dp_recommender_spends_its_budget(tiny_split):
    torch.set_num_threads(1)
    dataset, split = tiny_split
    config = privacy.DPConfig(dim=8, hidden_dim=16, epochs=2, batch_size=8, content_dim=4)
    model = privacy.DPTwoTowerRecommender(_content_vectors(dataset), config, target_epsilon=2.0).fit(split.train, dataset.items)
    report = model.report_
    assert report.private
    assert report.privacy_unit == "user"
    assert report.n_users == split.train[COL_USER].nunique()
    assert report.sample_rate == pytest.approx(1 / math.ceil(report.n_users / 8))
    assert report.steps == 2 * round(1 / report.sample_rate)
    assert report.noise_multiplier > 0
    assert report.delta == pytest.approx(0.1 / report.n_users)
    assert abs(report.spent_epsilon - 2.0) <= privacy.EPSILON_TOLERANCE
    assert report.spent_epsilon <= 2.0 + 1e-6
    assert privacy.check_budget(report) == pytest.approx(report.spent_epsilon - 2.0)

    history = split.history("test")
    recs = model.recommend(split.test[COL_USER].unique()[:5], k=5, history=history)
    seen = set(zip(history[COL_USER], history[COL_ITEM]))
    assert not any((u, i) in seen for u, i in zip(recs[COL_USER], recs[COL_ITEM]))
    assert recs.groupby(COL_USER).size().max() == 5


def test_dp_training_and_inference_agree(tiny_split):
    torch.set_num_threads(1)
    dataset, split = tiny_split
    config = privacy.DPConfig(dim=8, hidden_dim=16, epochs=1, batch_size=8, max_targets=4)
    fitted = privacy.DPTwoTowerRecommender(_content_vectors(dataset), config, target_epsilon=None).fit(split.train, dataset.items)
    report = fitted.report_
    assert not report.private
    assert report.noise_multiplier == 0.0
    assert math.isinf(report.spent_epsilon)

    users, sequences = privacy._first_time_sequences(split.train, fitted.item_index_)
    row = int(np.argmax([len(s) for s in sequences]))
    sequence = sequences[row]
    width = len(sequence) + 1
    padded = torch.full((1, width), len(fitted.item_ids_))
    padded[0, : len(sequence)] = torch.from_numpy(sequence)
    means = privacy._content_prefix_means(fitted.model_, [sequence], width)
    with torch.no_grad():
        logits, _, _ = fitted.model_(padded, torch.tensor([len(sequence)]), means)
    # The last target's prefix is every item but the last one; score() must give the same numbers.
    prefix = _interactions([(users[row], fitted.item_ids_[i], t) for t, i in enumerate(sequence[:-1])])
    scores = fitted.score([users[row]], history=prefix)
    np.testing.assert_allclose(scores[0], logits[0, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_dp_recommender_rejects_incomplete_vectors(tiny_split):
    dataset, split = tiny_split
    ids, matrix = _content_vectors(dataset)
    model = privacy.DPTwoTowerRecommender((ids[1:], matrix[1:]), privacy.DPConfig(epochs=1), target_epsilon=None)
    with pytest.raises(DataError, match=r"item_vectors lack 1 catalog items"):
        model.fit(split.train, dataset.items)


def test_dp_recommender_rejects_bad_budget():
    with pytest.raises(ValueError, match=r"target_epsilon must be a positive number or None \(no DP\); got 0"):
        privacy.DPTwoTowerRecommender(target_epsilon=0)


def test_check_budget_raises_when_exceeded():
    report = privacy.DPReport(True, 1.0, 1e-5, 1.2, 1.0, 1.0, 0.1, 100, 10, 1000, "prv")
    with pytest.raises(privacy.PrivacyBudgetError, match=r"spent epsilon 1\.2000 at delta 1e-05, above the target 1"):
        privacy.check_budget(report)


def test_privacy_utility_curve_rows(tiny_split):
    torch.set_num_threads(1)
    dataset, split = tiny_split
    config = privacy.DPConfig(dim=8, hidden_dim=16, epochs=1, batch_size=8)
    table = privacy.privacy_utility_curve(split, dataset.items, [3.0], item_vectors=_content_vectors(dataset), config=config, n_bootstrap=20)
    assert list(table.columns) == privacy.CURVE_COLUMNS
    assert table["model"].tolist() == ["non-private", "DP eps=3", "MostPopular"]
    assert table["private"].tolist() == [False, True, False]
    assert math.isinf(table.loc[0, "spent_epsilon"])
    assert abs(table.loc[1, "spent_epsilon"] - 3.0) <= privacy.EPSILON_TOLERANCE
    assert table["value"].between(0, 1).all()
    assert (table["ci_low"] <= table["value"]).all()
    ax = privacy.plot_privacy_utility(table)
    assert ax.get_xscale() == "log"


def test_privacy_utility_curve_rejects_bad_epsilons(tiny_split):
    dataset, split = tiny_split
    with pytest.raises(ValueError, match=r"epsilons must be a non-empty list of positive numbers; got \[\]"):
        privacy.privacy_utility_curve(split, dataset.items, [])
