"""Tests for the tables and figures of notebooks 01 and 02 (vidrec_lab.viz_features)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import media  # noqa: E402
from vidrec_lab import viz, viz_features as vf  # noqa: E402
from vidrec_lab.features.audio import extract_audio_features  # noqa: E402
from vidrec_lab.features.text import TextCleaningConfig  # noqa: E402
from vidrec_lab.features.video import extract_video_features  # noqa: E402
from vidrec_lab.tables import DataError  # noqa: E402

MONDAY = 1_704_067_200  # 2024-01-01 00:00 UTC, a Monday
DAY = 86_400


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- text examples


def test_find_text_examples_picks_each_kind():
    texts = pd.Series(
        {
            "a": "plain words only",
            "b": "Tom &amp; Jerry are back",
            "c": "a long caption with a link https://example.com/x and more words",
            "d": "see www.example.org",
            "e": "party 🎉",
            "f": "ＡＢＣ full width",
            "g": "今天吃火锅 #美食",
            "h": None,
        }
    )
    examples = vf.find_text_examples(texts)
    assert examples.index.tolist() == ["HTML entity", "URL", "emoji", "full-width characters", "Chinese text", "hashtags"]
    assert examples.loc["HTML entity", "source"] == "b"
    assert examples.loc["URL", "source"] == "d"  # the shorter of the two URL texts
    assert examples.loc["emoji", "text"] == "party 🎉"
    assert examples.loc["Chinese text", "source"] == "g"
    assert examples.loc["hashtags", "source"] == "g"


def test_find_text_examples_first_choice_and_custom_patterns():
    texts = pd.Series(["Usual Suspects, The", "Net, The", "Il Postino"], index=["12", "38", "14"])
    first = vf.find_text_examples(texts, {"article": r", The$"}, choose="first")
    assert first.loc["article", "source"] == "12"
    shortest = vf.find_text_examples(texts, {"article": r", The$"})
    assert shortest.loc["article", "source"] == "38"
    assert vf.find_text_examples(texts, {"none": r"zzz"}).empty


def test_find_text_examples_rejects_bad_input():
    with pytest.raises(ValueError, match=r"pattern for 'broken' is not a valid regular expression"):
        vf.find_text_examples(pd.Series(["x"]), {"broken": "("})
    with pytest.raises(TypeError, match="texts must be a pandas Series; got list"):
        vf.find_text_examples(["x"])
    with pytest.raises(ValueError, match=r"choose must be one of \('shortest', 'first'\); got 'last'"):
        vf.find_text_examples(pd.Series(["x"]), choose="last")


def test_movielens_patterns_find_their_cases():
    titles = pd.Series(
        ["Toy Story", "Usual Suspects, The", "Postino, Il", "City of Lost Children, The (Cité des enfants perdus, La)"],
        index=["1", "12", "14", "58"],
    )
    examples = vf.find_text_examples(titles, vf.MOVIELENS_TITLE_PATTERNS)
    assert examples["source"].to_dict() == {
        "English article at the end": "12",
        "article of another language": "14",
        "alternative title with article": "58",
        "accented letters": "58",
    }


def test_cleaning_table_keeps_chinese_and_moves_hashtags():
    texts = pd.Series({"v1": "看这个#搞笑 &amp; ＡＢＣ", "v2": "Usual Suspects, The"})
    table = vf.cleaning_table(texts, TextCleaningConfig())
    assert table.columns.tolist() == ["raw", "cleaned", "tags"]
    assert table.loc["v1", "raw"] == "看这个#搞笑 &amp; ＡＢＣ"
    assert table.loc["v1", "cleaned"] == "看这个 & ABC"
    assert table.loc["v1", "tags"] == ["搞笑"]
    assert table.loc["v2", "tags"] == []

    kept = vf.cleaning_table(texts, TextCleaningConfig(movielens_title=True), split_tags=False)
    assert kept.columns.tolist() == ["raw", "cleaned"]
    assert kept.loc["v1", "cleaned"] == "看这个#搞笑 & ABC"
    assert kept.loc["v2", "cleaned"] == "The Usual Suspects"


def test_cleaning_table_rejects_non_string():
    with pytest.raises(TypeError, match="split_hashtags expects a string or None; got int 5"):
        vf.cleaning_table(pd.Series([5]))


def test_cleaning_ablation_lists_steps_that_change_the_text():
    texts = pd.Series({"x": "<b>Hi</b> &amp; 🎉 猫"})
    table = vf.cleaning_ablation(texts, TextCleaningConfig(emoji="remove"))
    assert table.columns.tolist() == ["source", "step switched off", "all steps", "without this step"]
    assert table["step switched off"].tolist() == ["strip_html_tags", "unescape_html", "emoji", "collapse_whitespace"]
    assert set(table["all steps"]) == {"Hi & 猫"}
    without = dict(zip(table["step switched off"], table["without this step"]))
    assert without["strip_html_tags"] == "<b>Hi</b> & 猫"
    assert without["unescape_html"] == "Hi &amp; 猫"
    assert without["emoji"] == "Hi & 🎉 猫"
    assert without["collapse_whitespace"] == " Hi  &   猫"


def test_cleaning_ablation_skips_steps_already_off():
    table = vf.cleaning_ablation(pd.Series(["party 🎉"]), TextCleaningConfig(emoji="keep"))
    assert "emoji" not in table["step switched off"].tolist()
    assert table.empty


# ---------------------------------------------------------------------------- behaviour plots


def _interactions(timestamps, events=None, values=None):
    n = len(timestamps)
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 2}" for i in range(n)],
            "item_id": [f"i{i % 3}" for i in range(n)],
            "timestamp": timestamps,
            "event": events if events is not None else ["view"] * n,
            "value": values if values is not None else [1.0] * n,
        }
    )


def test_activity_over_time_counts_weeks_and_keeps_empty_ones():
    table = _interactions([MONDAY, MONDAY + 2 * DAY, MONDAY + 15 * DAY])
    ax = vf.plot_activity_over_time(table, freq="W")
    assert [patch.get_height() for patch in ax.patches] == [2, 0, 1]
    assert ax.get_title() == "Activity per week"


def test_activity_over_time_rejects_bad_input():
    with pytest.raises(ValueError, match=r"freq must be one of \['D', 'W', 'M'\]; got 'Y'"):
        vf.plot_activity_over_time(_interactions([MONDAY]), freq="Y")
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp'\]"):
        vf.plot_activity_over_time(pd.DataFrame({"user_id": ["u"]}))
    with pytest.raises(DataError, match="column 'timestamp' at row 1 is 'soon'; expected seconds since 1970"):
        vf.plot_activity_over_time(_interactions([MONDAY, "soon"]))
    with pytest.raises(DataError, match="the table is empty"):
        vf.plot_activity_over_time(_interactions([]))


def test_watch_ratio_histogram_and_median():
    table = _interactions([1, 2, 3, 4], events=["view", "view", "like", "view"], values=[0.1, 0.5, 1.0, 0.9])
    ax = vf.plot_watch_ratio(table, bins=10)
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == 3  # the like is not a watch ratio
    assert heights[1] == 1
    assert heights[5] == 1
    assert heights[9] == 1
    median_line = ax.get_lines()[0]
    assert median_line.get_xdata()[0] == pytest.approx(0.5)


def test_watch_ratio_rejects_bad_input():
    ratings = _interactions([1, 2], events=["rating", "rating"], values=[4.0, 5.0])
    with pytest.raises(DataError, match=r"no 'view' events, so there are no watch ratios; events found: \['rating'\]"):
        vf.plot_watch_ratio(ratings)
    bad = _interactions([1, 2], values=[0.5, 1.5])
    with pytest.raises(DataError, match=r"'view' value at row 1 is 1.5; a watch ratio must be a number in \[0, 1\]"):
        vf.plot_watch_ratio(bad)


def test_interaction_matrix_sorted_share_per_cell():
    matrix = sp.csr_matrix(np.array([[0, 1, 0], [1, 1, 0]], dtype=float))
    ax = vf.plot_interaction_matrix(matrix)
    shown = np.asarray(ax.images[0].get_array())
    # User 1 (two items) first; item 1 (two users), then item 0, then item 2 (none).
    np.testing.assert_array_equal(shown, [[1, 1, 0], [1, 0, 0]])
    assert ax.get_title() == "Interaction matrix: 50.00% filled"


def test_interaction_matrix_blocks_average_cells():
    dense = np.zeros((4, 4))
    dense[0, :] = 1.0  # user 0, the most active, has every item
    dense[1, 0] = 1.0
    ax = vf.plot_interaction_matrix(dense, bins=2)
    shown = np.asarray(ax.images[0].get_array())
    # Block (0, 0) holds users 0-1 x items 0-1: 3 of 4 cells; block (0, 1): 2 of 4.
    np.testing.assert_allclose(shown, [[0.75, 0.5], [0.0, 0.0]])


def test_interaction_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="bins must be a positive integer; got 0"):
        vf.plot_interaction_matrix(np.ones((2, 2)), bins=0)
    with pytest.raises(ValueError, match=r"matrix must have rows and columns; got shape \(0, 3\)"):
        vf.plot_interaction_matrix(np.zeros((0, 3)))


def test_top_tags_counts_items_not_repeats():
    tags = pd.Series([["a", "b"], ["a"], ["a", "a", "猫"], []])
    ax = vf.plot_top_tags(tags, n=3)
    labels = [label.get_text() for label in ax.get_yticklabels()]
    widths = [patch.get_width() for patch in ax.patches]
    assert labels == ["猫", "b", "a"]  # bottom to top; ties in code-point order
    assert widths == pytest.approx([0.25, 0.25, 0.75])


def test_top_tags_cuts_long_labels_and_rejects_bad_input():
    ax = vf.plot_top_tags(pd.Series([["abcdefghij"]]), max_label_chars=5)
    assert [label.get_text() for label in ax.get_yticklabels()] == ["abcd…"]
    with pytest.raises(DataError, match="element 1 is 'x'; expected a list of tags"):
        vf.plot_top_tags(pd.Series([["a"], "x"]))
    with pytest.raises(DataError, match="no item has a tag"):
        vf.plot_top_tags(pd.Series([[], []]))
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        vf.plot_top_tags(pd.Series([["a"]]), n=0)


def test_sequence_preview_shows_latest_titles():
    sequences = {"u1": ["i1", "i2", "i3"], "u2": ["i2"], "u3": ["i1"]}
    titles = pd.Series({"i1": "猫", "i2": "Dog"})
    table = vf.sequence_preview(sequences, titles, n_users=2, last=2)
    assert table.index.tolist() == ["u1", "u2"]
    assert table.loc["u1", "length"] == 3
    assert table.loc["u1", "latest items"] == "Dog → i3"
    assert table.loc["u2", "latest items"] == "Dog"
    with pytest.raises(ValueError, match="last must be a positive integer; got 0"):
        vf.sequence_preview(sequences, last=0)


# ---------------------------------------------------------------------------- embeddings


def test_primary_genres_modes():
    genres = pd.Series([["Drama", "Comedy"], ["Horror"], []], index=["a", "b", "c"])
    assert vf.primary_genres(genres).tolist() == ["Drama", "Horror", "none"]
    single = vf.primary_genres(genres, mode="single")
    assert single.tolist() == ["multiple", "Horror", "none"]
    assert single.index.tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"mode must be one of \('first', 'single'\); got 'all'"):
        vf.primary_genres(genres, mode="all")
    with pytest.raises(DataError, match="element 0 is 'Drama'; expected a list of genres"):
        vf.primary_genres(pd.Series(["Drama"]))


def test_project_2d_pca_keeps_distances_of_planar_points():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(12, 2))
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0]  # orthonormal columns, (5, 2)
    vectors = plane @ basis.T + 3.0  # points on a 2-D plane inside 5-D space
    projection = vf.project_2d(vectors)
    before = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    after = np.linalg.norm(projection.coords[:, None] - projection.coords[None], axis=-1)
    np.testing.assert_allclose(after, before, atol=1e-9)
    assert projection.explained_variance_ratio.sum() == pytest.approx(1.0)
    first, second = projection.explained_variance_ratio
    assert projection.axis_labels == (f"PC1 ({first:.1%} of variance)", f"PC2 ({second:.1%})")


def test_project_2d_tsne_is_seeded():
    vectors = np.random.default_rng(1).normal(size=(12, 4))
    first = vf.project_2d(vectors, method="tsne", seed=3)
    second = vf.project_2d(vectors, method="tsne", seed=3)
    assert first.coords.shape == (12, 2)
    np.testing.assert_allclose(first.coords, second.coords)
    assert first.explained_variance_ratio is None
    assert first.axis_labels == ("t-SNE 1", "t-SNE 2")


def test_project_2d_rejects_bad_input():
    with pytest.raises(ValueError, match=r"method must be one of \('pca', 'tsne'\); got 'umap'"):
        vf.project_2d(np.ones((4, 3)), method="umap")
    with pytest.raises(ValueError, match=r"n >= 3 and dim >= 2; got \(2, 3\)"):
        vf.project_2d(np.ones((2, 3)))
    vectors = np.ones((4, 3))
    vectors[2, 1] = np.nan
    with pytest.raises(ValueError, match="vector 2 contains NaN or infinity"):
        vf.project_2d(vectors)


def test_plot_embedding_2d_colours_top_labels_and_numbers_points():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ax = vf.plot_embedding_2d(coords, ["a", "a", "b", "c"], top=1, annotate={3: "今天吃火锅"})
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["other (2)", "a (2)", "1: 今天吃火锅"]
    assert [text.get_text() for text in ax.texts] == ["1"]


def test_plot_embedding_2d_renders_chinese(tmp_path):
    if viz.find_cjk_font() is None:
        pytest.skip("no CJK font installed (CI installs fonts-wqy-microhei)")
    viz.set_style()
    import warnings

    ax = vf.plot_embedding_2d(np.eye(3)[:, :2], ["美食", "萌宠", "美食"], annotate={0: "金鱼新手教程"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ax.figure.savefig(tmp_path / "map.png")
    assert [str(w.message) for w in caught if "missing from" in str(w.message)] == []


def test_plot_embedding_2d_rejects_bad_input():
    coords = np.zeros((3, 2))
    with pytest.raises(ValueError, match="got 2 labels for 3 points"):
        vf.plot_embedding_2d(coords, ["a", "b"])
    with pytest.raises(ValueError, match="top must be an integer from 1 to 8; got 9"):
        vf.plot_embedding_2d(coords, ["a", "b", "c"], top=9)
    with pytest.raises(ValueError, match=r"annotated positions \[5\] are not in 0..2"):
        vf.plot_embedding_2d(coords, ["a", "b", "c"], annotate={5: "x"})
    with pytest.raises(ValueError, match=r"coordinates must have shape \(n, 2\); got \(3, 3\)"):
        vf.plot_embedding_2d(np.zeros((3, 3)), ["a", "b", "c"])


def _genre_case():
    root = 1 / math.sqrt(2)
    vectors = np.array(
        [
            [2.0, 0.0],  # A, scaled: rows are normalised inside
            [1.0, 0.0],  # A
            [0.0, 3.0],  # B
            [root, root],  # A and B
            [0.0, 0.0],  # empty text: no pairs
            [1.0, 0.0],  # no genre: no pairs
        ]
    )
    genres = pd.Series([["A"], ["A"], ["B"], ["A", "B"], ["A"], []])
    return vectors, genres


def test_genre_pair_cosines_hand_computed():
    vectors, genres = _genre_case()
    shared, disjoint = vf.genre_pair_cosines(vectors, genres)
    root = 1 / math.sqrt(2)
    # Pairs (0,1) 1.0, (0,3) root, (1,3) root, (2,3) root share a genre; (0,2) and (1,2) share none.
    np.testing.assert_allclose(shared, [1.0, root, root, root])
    np.testing.assert_allclose(disjoint, [0.0, 0.0], atol=1e-12)


def test_genre_cosine_gap_table():
    vectors, genres = _genre_case()
    table = vf.genre_cosine_gap({"full": vectors, "shuffled": vectors[[2, 1, 0, 3, 4, 5]]}, genres)
    root = 1 / math.sqrt(2)
    assert table.index.tolist() == ["full", "shuffled"]
    assert table.loc["full", "mean cosine, shared genre"] == pytest.approx((1 + 3 * root) / 4)
    assert table.loc["full", "mean cosine, no shared genre"] == pytest.approx(0.0)
    assert table.loc["full", "gap"] == pytest.approx((1 + 3 * root) / 4)
    assert table.loc["full", "pairs, shared genre"] == 4
    assert table.loc["full", "pairs, no shared genre"] == 2
    # Swapping rows 0 and 2 puts B's vector on an A item: pair (0,1) now shares A with cosine 0.
    assert table.loc["shuffled", "mean cosine, shared genre"] == pytest.approx(3 * root / 4)
    assert table.loc["shuffled", "mean cosine, no shared genre"] == pytest.approx(0.5)


def test_genre_pair_cosines_subset_is_seeded():
    vectors, genres = _genre_case()
    first = vf.genre_pair_cosines(vectors, genres, max_items=2, seed=5)
    second = vf.genre_pair_cosines(vectors, genres, max_items=2, seed=5)
    assert len(first[0]) + len(first[1]) == 1  # two items make one pair
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_genre_pair_cosines_rejects_bad_input():
    vectors, genres = _genre_case()
    with pytest.raises(ValueError, match=r"vectors must have shape \(6, dim\), one row per genre list; got \(5, 2\)"):
        vf.genre_pair_cosines(vectors[:5], genres)
    with pytest.raises(ValueError, match="max_items must be an integer >= 2 or None; got 1"):
        vf.genre_pair_cosines(vectors, genres, max_items=1)
    with pytest.raises(DataError, match="genres element 0 is 'A'; expected a list of genres"):
        vf.genre_pair_cosines(vectors[:1], pd.Series(["A"]))
    broken = vectors.copy()
    broken[1, 0] = np.inf
    with pytest.raises(ValueError, match="vectors contain NaN or infinity"):
        vf.genre_pair_cosines(broken, genres)


def test_plot_pair_cosines_marks_means():
    ax = vf.plot_pair_cosines(np.array([0.8, 1.0]), np.array([0.0, 0.2, 0.4]), title="t")
    means = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert means == pytest.approx([0.2, 0.9])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "no shared genre (3 pairs)",
        "shared genre (2 pairs)",
    ]
    with pytest.raises(ValueError, match="both cosine arrays are empty"):
        vf.plot_pair_cosines(np.array([]), np.array([]))


def test_nearest_titles_hand_computed():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7], [0.0, 0.0]])
    titles = pd.Series(["Query", "Near", "Far", "金鱼", "Empty"], index=["q", "a", "b", "c", "e"])
    table = vf.nearest_titles(vectors, titles, ["q", "b"], k=2)
    assert table.index.tolist() == [("Query", 1), ("Query", 2), ("Far", 1), ("Far", 2)]
    assert table["item_id"].tolist() == ["a", "c", "c", "a"]
    assert table["title"].tolist() == ["Near", "金鱼", "金鱼", "Near"]
    np.testing.assert_allclose(
        table["cosine"], [0.9 / math.hypot(0.9, 0.1), 1 / math.sqrt(2), 1 / math.sqrt(2), 0.1 / math.hypot(0.9, 0.1)]
    )


def test_nearest_titles_rejects_bad_input():
    vectors = np.eye(3)
    titles = pd.Series(["x", "y", "z"], index=["1", "2", "3"])
    with pytest.raises(KeyError, match=r"query item\(s\) \['9'\] are not in the titles index"):
        vf.nearest_titles(vectors, titles, ["9"], k=1)
    with pytest.raises(ValueError, match="k must be an integer from 1 to 2; got 3"):
        vf.nearest_titles(vectors, titles, ["1"], k=3)
    with pytest.raises(ValueError, match="item id '1' appears more than once"):
        vf.nearest_titles(vectors, pd.Series(["x", "y", "z"], index=["1", "1", "3"]), ["3"], k=1)
    with pytest.raises(ValueError, match=r"vectors must have shape \(3, dim\), one row per title; got \(2, 3\)"):
        vf.nearest_titles(vectors[:2], titles, ["1"], k=1)


# ---------------------------------------------------------------------------- media table


def test_media_feature_table_joins_features_and_flags(tmp_path):
    with_sound = media.write_test_video(tmp_path / "a.mp4", seconds=1.0, fps=10, size=(32, 32))
    silent = media.write_test_video(tmp_path / "b.mp4", seconds=1.0, fps=10, size=(32, 32), with_audio=False)
    paths = {"a": with_sound, "b": silent, "gone": tmp_path / "missing.mp4"}
    video = extract_video_features(paths, n_frames=3, size=32, progress=False)
    audio = extract_audio_features(paths, progress=False)
    table = vf.media_feature_table(video, audio)

    assert table.index.tolist() == ["a", "b"]  # the missing file is in the failure tables instead
    assert table.columns.tolist() == [
        *vf.VIDEO_SUMMARY_COLUMNS, "video_dim", *vf.AUDIO_SUMMARY_COLUMNS, "audio_dim",
        "duration_s", "no_audio", "silent", "too_short", "tempo_valid",
    ]  # fmt: skip
    assert table["video_dim"].tolist() == [78, 78]
    assert table["audio_dim"].tolist() == [175, 175]
    assert table["no_audio"].tolist() == [False, True]
    assert table.loc["a", "brightness_mean"] == pytest.approx(video.to_frame().loc["a", "brightness_mean"])
    assert table.loc["a", "rms_dbfs_mean"] == pytest.approx(audio.to_frame().loc["a", "rms_dbfs_mean"])
    assert video.n_failed == 1
    assert audio.n_failed == 1


def test_media_feature_table_without_videos_and_unknown_column():
    video = extract_video_features({}, progress=False)
    audio = extract_audio_features({}, progress=False)
    table = vf.media_feature_table(video, audio)
    assert table.empty
    assert "tempo_valid" in table.columns
    with pytest.raises(KeyError, match=r"video features \['sharpness'\] not found"):
        vf.media_feature_table(video, audio, video_columns=["sharpness"])
