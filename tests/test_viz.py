import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from vidrec_lab import viz


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, ax = viz.new_axes()
    ax.plot([0, 1], [0, 1])
    paths = viz.save_figure(fig, "line", notebook="00_quickstart", folder=tmp_path)
    assert [p.name for p in paths] == ["00_quickstart_line.png", "00_quickstart_line.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert list(tmp_path.glob(".*.tmp")) == []


def test_save_figure_is_byte_identical_on_rerun(tmp_path):
    fig, ax = viz.new_axes()
    ax.bar(["a", "b"], [1, 2])
    first = [p.read_bytes() for p in viz.save_figure(fig, "bars", folder=tmp_path)]
    second = [p.read_bytes() for p in viz.save_figure(fig, "bars", folder=tmp_path)]
    assert first == second


def test_save_figure_rejects_bad_name_and_format(tmp_path):
    fig, _ = viz.new_axes()
    with pytest.raises(ValueError, match="figure name 'a/b' is invalid"):
        viz.save_figure(fig, "a/b", folder=tmp_path)
    with pytest.raises(ValueError, match=r"figure formats must be among .* got \['jpg'\]"):
        viz.save_figure(fig, "ok", folder=tmp_path, formats=("jpg",))


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    fig, _ = viz.new_axes()

    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        viz.save_figure(fig, "broken", folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cjk_title_renders_with_fallback_font(tmp_path):
    if viz.find_cjk_font() is None:
        pytest.skip("no CJK font installed (CI installs fonts-wqy-microhei)")
    viz.set_style()
    fig, ax = viz.new_axes()
    ax.set_title("搞笑视频 #美食")
    with _no_glyph_warning():
        fig.savefig(tmp_path / "cjk.png")


class _no_glyph_warning:
    """Fail when matplotlib warns that a glyph is missing from every font."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        missing = [str(r.message) for r in self.records if "missing from" in str(r.message)]
        assert missing == []
        return False


def test_plot_helpers_return_axes():
    interactions = pd.DataFrame(
        {"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "x", "x"], "event": "rating", "value": [5.0, 3.0, 4.0, 5.0]}
    )
    _, axes = viz.new_axes(ncols=3)
    assert viz.plot_long_tail(interactions, ax=axes[0]) is axes[0]
    assert viz.plot_user_activity(interactions, ax=axes[1]) is axes[1]
    assert viz.plot_value_distribution(interactions, ax=axes[2]) is axes[2]
    heights = [p.get_height() for p in axes[2].patches]
    assert heights == [1, 1, 2]
