"""Tests for vidrec_lab.features.video: frame sampling, orientation, descriptor, image encoder, catalog runs."""

from __future__ import annotations

import logging
import time

import av
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import media  # noqa: E402
from vidrec_lab.features import video  # noqa: E402
from vidrec_lab.features.cache import FeatureCache  # noqa: E402
from vidrec_lab.features.video import (  # noqa: E402
    FAILURE_COLUMNS,
    FrameSample,
    MediaError,
    VisualEncoder,
    apply_display_transform,
    describe_frames,
    descriptor_names,
    display_transform,
    extract_video_features,
    plot_frame_strip,
    sample_frames,
    sample_times,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
ONE = 1 << 16  # 1.0 in the 16.16 fixed point of display matrices


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def short_video(media_dir):
    """2 s at 10 fps: frame i is shown at i / 10 s and encodes i."""
    return media.write_test_video(media_dir / "short.mp4", seconds=2, fps=10)


@pytest.fixture(scope="module")
def long_video(media_dir):
    """20 s at 10 fps (200 frames), a keyframe every 10 frames, no audio."""
    return media.write_test_video(media_dir / "long.mp4", seconds=20, fps=10, gop_size=10, with_audio=False)


def solid(color, n=1, size=(8, 6)):
    return np.full((n, size[1], size[0], 3), color, dtype=np.uint8)


def feature(vector, name):
    return float(vector[descriptor_names().index(name)])


# --------------------------------------------------------------------------- target times


def test_sample_times_even_centres():
    np.testing.assert_allclose(sample_times(2.0, 4), [0.25, 0.75, 1.25, 1.75])


def test_sample_times_per_second():
    np.testing.assert_allclose(sample_times(2.5, per_second=1), [0.5, 1.5])
    np.testing.assert_allclose(sample_times(2.0, per_second=2), [0.25, 0.75, 1.25, 1.75])


def test_sample_times_short_and_empty():
    np.testing.assert_allclose(sample_times(0.3, per_second=1), [0.15])
    np.testing.assert_allclose(sample_times(0.0, 3), [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_frames": 0}, r"n_frames must be a positive integer; got 0"),
        ({"n_frames": 2.5}, r"n_frames must be a positive integer; got 2.5"),
        ({"per_second": 0}, r"per_second must be a positive number of frames per second; got 0"),
    ],
)
def test_sample_times_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_times(2.0, **kwargs)


# --------------------------------------------------------------------------- frame sampling


def test_sample_frames_picks_right_frames(short_video):
    sample = sample_frames(short_video, 4, size=None)
    assert sample.frames.shape == (4, 48, 64, 3)
    assert sample.frames.dtype == np.uint8
    np.testing.assert_allclose(sample.targets, [0.25, 0.75, 1.25, 1.75])
    # First frame at or after each target: frames 3, 8, 13 and 18 at 0.3, 0.8, 1.3 and 1.8 s.
    np.testing.assert_allclose(sample.timestamps, [0.3, 0.8, 1.3, 1.8], atol=1e-9)
    assert [media.read_frame_index(f) for f in sample.frames] == [3, 8, 13, 18]


def test_sample_frames_source_info(short_video):
    info = sample_frames(short_video, 2).info
    assert info.duration == pytest.approx(2.0)
    assert info.fps == pytest.approx(10.0)
    assert info.codec == "mpeg4"
    assert (info.width, info.height) == (64, 48)
    assert info.rotation == 0
    assert not info.mirrored
    assert not info.is_image


def test_sample_frames_per_second(short_video):
    sample = sample_frames(short_video, per_second=2, size=None)
    assert [media.read_frame_index(f) for f in sample.frames] == [3, 8, 13, 18]


def test_sample_frames_seeks_instead_of_decoding_all(long_video):
    sample = sample_frames(long_video, 4, size=None)
    assert [media.read_frame_index(f) for f in sample.frames] == [25, 75, 125, 175]
    # Each target costs at most one keyframe interval (10 frames) of decoding, not the 200 frames of the file.
    assert sample.frames_decoded <= 4 * 10
    assert sample.frames_decoded < 200


def test_sample_frames_matches_decode_all(long_video):
    sample = sample_frames(long_video, 5, size=None)
    with av.open(str(long_video)) as container:
        stream = container.streams.video[0]
        decoded = [(float(f.pts * stream.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    for target, frame in zip(sample.targets, sample.frames):
        expected = next(image for time, image in decoded if time >= target - 1e-9)
        np.testing.assert_array_equal(frame, expected)


def test_sample_frames_matroska_index_read_lazily(media_dir):
    # Matroska has no keyframe index until the first seek reads its cues.
    path = media.write_test_video(media_dir / "long.mkv", seconds=20, fps=10, gop_size=10, with_audio=False)
    sample = sample_frames(path, 4, size=None)
    assert [media.read_frame_index(f) for f in sample.frames] == [25, 75, 125, 175]
    assert sample.frames_decoded <= 4 * 10


def test_sample_frames_variable_frame_rate(media_dir):
    times = [0.0, 0.05, 0.1, 1.2, 1.25, 1.9]
    path = media.write_test_video(media_dir / "vfr.mp4", frame_times=times, fps=10, with_audio=False)
    sample = sample_frames(path, 4, size=None)
    assert sample.info.duration == pytest.approx(2.0)  # last frame at 1.9 s lasts 0.1 s
    # Targets 0.25, 0.75, 1.25, 1.75 s; by time, not by frame number, they land on frames 3, 3, 4, 5.
    assert [media.read_frame_index(f) for f in sample.frames] == [3, 3, 4, 5]
    np.testing.assert_allclose(sample.timestamps, [1.2, 1.2, 1.25, 1.9], atol=1e-9)


def test_sample_frames_crop_square(short_video):
    sample = sample_frames(short_video, 4, size=32, fit="crop")
    assert sample.frames.shape == (4, 32, 32, 3)
    assert [media.read_frame_index(f) for f in sample.frames] == [3, 8, 13, 18]


def test_sample_frames_pad_square(media_dir):
    path = media.write_test_video(media_dir / "green.mp4", colors=[GREEN] * 5, size=(64, 48), with_audio=False)
    frame = sample_frames(path, 1, size=32, fit="pad").frames[0]
    assert frame.shape == (32, 32, 3)
    # 64x48 scales to 32x24, centred between 4 black rows above and below.
    assert frame[:4].max() == 0
    assert frame[28:].max() == 0
    np.testing.assert_allclose(frame[8:24, 4:28].reshape(-1, 3).mean(axis=0), GREEN, atol=3)


@pytest.mark.parametrize(("fit", "size"), [("stretch", 32), ("crop", 0)])
def test_sample_frames_invalid_options(short_video, fit, size):
    with pytest.raises(ValueError, match="fit must be one of|size must be a positive number"):
        sample_frames(short_video, 2, size=size, fit=fit)


def test_sample_frames_truncated_stream_warns(media_dir, caplog):
    # Matroska states the full duration in its header, so a cut file opens but ends early.
    full = media.write_test_video(media_dir / "cut_source.mkv", seconds=20, fps=10, with_audio=False)
    cut = media.write_truncated_copy(full, media_dir / "cut.mkv", 0.3)
    with caplog.at_level(logging.WARNING, logger=video.__name__):
        sample = sample_frames(cut, 4, size=None)
    assert sample.timestamps[-1] < 10
    assert "may be truncated" in caplog.text


# --------------------------------------------------------------------------- orientation


def top_red_bottom_blue_left_green(width=64, height=48):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2] = RED
    image[height // 2 :] = BLUE
    image[:, : width // 8] = GREEN
    return image


def corner_colours(frame):
    height, width = frame.shape[:2]
    corners = {"top_left": frame[2, 2], "top_right": frame[2, width - 3]}
    corners |= {"bottom_left": frame[height - 3, 2], "bottom_right": frame[height - 3, width - 3]}
    return {name: tuple(int(round(c / 255)) * 255 for c in rgb) for name, rgb in corners.items()}


@pytest.mark.parametrize(
    ("options", "shape", "expected", "rotation", "mirrored"),
    [
        # Counterclockwise quarter turn: the red top goes left, the green left edge goes to the bottom.
        ({"rotation": 90}, (64, 48), (RED, BLUE, GREEN, GREEN), 90, False),
        ({"rotation": -90}, (64, 48), (GREEN, GREEN, BLUE, RED), -90, False),
        ({"rotation": 180}, (48, 64), (BLUE, GREEN, RED, GREEN), 180, False),
        ({"hflip": True}, (48, 64), (RED, GREEN, BLUE, GREEN), 0, True),
        # The matrix portrait phone videos carry: a = 0, b = 1, c = -1, d = 0, a clockwise quarter turn.
        ({"display_matrix": [0, ONE, 0, -ONE, 0, 0, 0, 0, 1 << 30]}, (64, 48), (GREEN, GREEN, BLUE, RED), -90, False),
    ],
)
def test_sample_frames_applies_display_matrix(media_dir, options, shape, expected, rotation, mirrored):
    pattern = top_red_bottom_blue_left_green()
    path = media.write_test_video(media_dir / "rotated.mp4", pattern=pattern, seconds=0.5, with_audio=False, **options)
    sample = sample_frames(path, 1, size=None)
    frame = sample.frames[0]
    assert frame.shape[:2] == shape
    corners = corner_colours(frame)
    assert (corners["top_left"], corners["top_right"], corners["bottom_left"], corners["bottom_right"]) == expected
    assert sample.info.rotation == rotation
    assert sample.info.mirrored == mirrored
    assert (sample.info.height, sample.info.width) == shape


def test_display_transform_quarter_turns_match_rot90():
    image = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    for quarter, degrees in enumerate((0, 90, 180, 270)):
        radians = np.radians(degrees)
        # av_display_rotation_set layout for a counterclockwise turn, as PyAV's set_display_rotation writes it.
        a, b = np.cos(radians), -np.sin(radians)
        matrix = [round(a * ONE), round(b * ONE), 0, round(-b * ONE), round(a * ONE), 0, 0, 0, 1 << 30]
        out = apply_display_transform(image, display_transform(matrix))
        np.testing.assert_array_equal(out, np.rot90(image, quarter))


def test_display_transform_identity_and_invalid():
    assert display_transform(None) == (False, False, False)
    assert display_transform([ONE, 0, 0, 0, ONE, 0, 0, 0, 1 << 30]) == (False, False, False)
    with pytest.raises(ValueError, match="a display matrix has 9 entries; got shape"):
        display_transform([1, 2, 3])


# --------------------------------------------------------------------------- cover images


def test_sample_frames_png_cover(media_dir):
    image = np.full((30, 40, 3), (10, 200, 30), dtype=np.uint8)
    path = media.write_image(media_dir / "cover.png", image)
    sample = sample_frames(path, 8, size=20)
    assert sample.frames.shape == (1, 20, 20, 3)
    np.testing.assert_array_equal(sample.frames[0, 10, 10], (10, 200, 30))
    assert sample.info.is_image
    assert sample.info.duration == 0.0
    assert sample.info.fps is None
    assert (sample.info.width, sample.info.height) == (40, 30)
    np.testing.assert_array_equal(sample.timestamps, [0.0])


def test_sample_frames_jpeg_cover(media_dir):
    image = np.full((30, 40, 3), (10, 200, 30), dtype=np.uint8)
    path = media.write_image(media_dir / "cover.jpg", image)
    sample = sample_frames(path, 3, size=None)
    assert sample.frames.shape == (1, 30, 40, 3)
    assert sample.info.codec == "mjpeg"
    np.testing.assert_allclose(sample.frames[0].reshape(-1, 3).mean(axis=0), (10, 200, 30), atol=3)


# --------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def broken_files(media_dir, long_video):
    folder = media_dir / "broken"
    folder.mkdir()
    empty_bytes = folder / "zero.mp4"
    empty_bytes.write_bytes(b"")
    return {
        "missing": folder / "absent.mp4",
        "zero_bytes": empty_bytes,
        "garbage": media.write_garbage(folder / "garbage.mp4"),
        "truncated": media.write_truncated_copy(long_video, folder / "truncated.mp4"),
        "audio_only": media.write_audio_file(folder / "sound.wav", seconds=0.5),
        "no_frames": media.write_empty_video(folder / "no_frames.mp4"),
        "raw_h264": media.write_test_video(folder / "raw.h264", codec="libx264", with_audio=False),
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", r"file not found: .*absent\.mp4"),
        ("zero_bytes", r"zero\.mp4 is empty \(0 bytes\)"),
        ("garbage", r"cannot open .*garbage\.mp4 as a media file"),
        ("truncated", r"cannot open .*truncated\.mp4 as a media file"),
        ("audio_only", r"sound\.wav has no video stream \(streams found: audio\)"),
        # An MP4 track without samples is dropped by the demuxer, so the file has no stream at all.
        ("no_frames", r"no_frames\.mp4 has no video stream \(streams found: none\)"),
        ("raw_h264", r"raw\.h264 has no timestamps \(a raw elementary stream\?\).*remux it into MP4"),
    ],
)
def test_sample_frames_errors_name_file(broken_files, name, message):
    with pytest.raises(MediaError, match=message):
        sample_frames(broken_files[name], 4)


def test_sample_frames_directory(media_dir):
    with pytest.raises(MediaError, match="is not a file"):
        sample_frames(media_dir, 4)


# --------------------------------------------------------------------------- descriptor


def test_descriptor_names_match_vector_length():
    names = descriptor_names()
    assert len(names) == 8 * 3 * 3 + 6
    assert len(set(names)) == len(names)
    assert describe_frames(solid(RED, 2)).shape == (len(names),)


def test_describe_frames_solid_red():
    vector = describe_frames(solid(RED, 3), timestamps=[0.0, 1.0, 2.0])
    # Red: hue 0 (bin 0), saturation 1 and value 1 (top bins).
    assert feature(vector, "hsv_h0_s2_v2") == pytest.approx(1.0)
    assert vector[: 8 * 3 * 3].sum() == pytest.approx(1.0)
    assert feature(vector, "brightness_mean") == pytest.approx(0.299)
    assert feature(vector, "contrast_mean") == pytest.approx(0.0)
    assert feature(vector, "motion_mean") == pytest.approx(0.0)
    assert feature(vector, "motion_std") == pytest.approx(0.0)
    assert feature(vector, "shot_change_fraction") == 0.0
    assert feature(vector, "shot_changes_per_second") == 0.0


@pytest.mark.parametrize(
    ("color", "name"),
    [
        (GREEN, "hsv_h3_s2_v2"),  # 120 degrees / 45 = 2.67, in the bin centred on 135 degrees
        (BLUE, "hsv_h5_s2_v2"),  # 240 degrees / 45 = 5.33, in the bin centred on 225 degrees
        ((128, 128, 128), "hsv_h0_s0_v1"),  # grey: no saturation, value 0.5
        ((255, 0, 20), "hsv_h0_s2_v2"),  # hue 355 degrees falls in the red bin centred on 0
    ],
)
def test_describe_frames_hue_bins(color, name):
    assert feature(describe_frames(solid(color)), name) == pytest.approx(1.0)


def test_describe_frames_cut_between_colours():
    frames = np.concatenate([solid(RED), solid(BLUE)])
    vector = describe_frames(frames, timestamps=[0.0, 0.5])
    assert feature(vector, "shot_change_fraction") == 1.0
    assert feature(vector, "shot_changes_per_second") == pytest.approx(2.0)  # one cut in 0.5 s
    # Luma of red 0.299, of blue 0.114: every pixel changes by 0.185.
    assert feature(vector, "motion_mean") == pytest.approx(0.185, abs=1e-6)
    assert feature(vector, "motion_std") == pytest.approx(0.0, abs=1e-6)
    assert feature(vector, "hsv_h0_s2_v2") == pytest.approx(0.5)
    assert feature(vector, "hsv_h5_s2_v2") == pytest.approx(0.5)


def test_describe_frames_one_cut_in_three_frames():
    frames = np.concatenate([solid(RED, 2), solid(BLUE)])
    vector = describe_frames(frames, timestamps=[0.0, 1.0, 2.0])
    assert feature(vector, "shot_change_fraction") == pytest.approx(0.5)
    assert feature(vector, "shot_changes_per_second") == pytest.approx(0.5)
    # Pair differences 0 and 0.185 over the same pixel count: mean 0.0925, std 0.0925.
    assert feature(vector, "motion_mean") == pytest.approx(0.0925, abs=1e-6)
    assert feature(vector, "motion_std") == pytest.approx(0.0925, abs=1e-6)


def test_describe_frames_contrast_half_black_half_white():
    frame = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    frame[:, :2] = 255
    vector = describe_frames(frame)
    assert feature(vector, "brightness_mean") == pytest.approx(0.5)
    assert feature(vector, "contrast_mean") == pytest.approx(0.5)


def test_describe_frames_uses_sample_timestamps():
    sample = FrameSample(
        frames=np.concatenate([solid(RED), solid(BLUE)]),
        timestamps=np.array([1.0, 5.0]),
        targets=np.array([1.0, 5.0]),
        info=None,
        frames_decoded=2,
    )
    assert feature(describe_frames(sample), "shot_changes_per_second") == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 4, 4, 3), dtype=np.float32), "frames must be uint8 RGB"),
        (np.zeros((4, 4, 3), dtype=np.uint8), r"frames must have shape \(n, height, width, 3\)"),
        (np.zeros((0, 4, 4, 3), dtype=np.uint8), r"with n >= 1; got \(0, 4, 4, 3\)"),
    ],
)
def test_describe_frames_invalid(frames, message):
    with pytest.raises(ValueError, match=message):
        describe_frames(frames)


def test_describe_frames_timestamp_count():
    with pytest.raises(ValueError, match="got 1 timestamps for 2 frames"):
        describe_frames(solid(RED, 2), timestamps=[0.0])


# --------------------------------------------------------------------------- catalog extraction


def test_extract_collects_failures(short_video, broken_files, media_dir, caplog):
    chinese_name = media_dir / "短视频.mp4"
    chinese_name.write_bytes(short_video.read_bytes())
    paths = {"v1": short_video, "视频二": chinese_name, **broken_files, "no_path": None}
    with caplog.at_level(logging.WARNING, logger=video.__name__):
        result = extract_video_features(paths, n_frames=3, size=32, progress=False)
    assert result.item_ids == ["v1", "视频二"]
    assert result.matrix.shape == (2, len(descriptor_names()))
    assert result.names == descriptor_names()
    assert np.isfinite(result.matrix).all()
    assert not result.missing.any()
    assert list(result.failures.columns) == list(FAILURE_COLUMNS)
    assert list(result.failures["item_id"]) == [*broken_files, "no_path"]
    errors = dict(zip(result.failures["item_id"], result.failures["error"]))
    assert "file not found" in errors["missing"]
    assert "no video stream" in errors["audio_only"]
    assert errors["no_path"] == "no path given for this item"
    assert result.n_failed == len(broken_files) + 1
    for item_id in [*broken_files, "no_path"]:
        assert f"item {item_id} failed" in caplog.text
    assert list(result.info["item_id"]) == ["v1", "视频二"]
    assert result.info["duration_s"].tolist() == pytest.approx([2.0, 2.0])
    assert list(result.to_frame().index) == ["v1", "视频二"]


def test_extract_full_matrix_zero_rows(short_video, broken_files):
    paths = {"bad": broken_files["garbage"], "good": short_video, "gone": broken_files["missing"]}
    result = extract_video_features(paths, n_frames=2, size=32, full_matrix=True, progress=False)
    assert result.item_ids == ["bad", "good", "gone"]
    np.testing.assert_array_equal(result.missing, [True, False, True])
    assert result.matrix.shape == (3, len(descriptor_names()))
    assert not result.matrix[[0, 2]].any()
    assert result.matrix[1].sum() > 0
    assert np.isfinite(result.matrix).all()
    np.testing.assert_allclose(result.matrix[1], describe_frames(sample_frames(short_video, 2, size=32)))


def test_extract_accepts_series_with_missing_paths(short_video):
    paths = pd.Series([str(short_video), np.nan, pd.NA], index=["a", "b", "c"], dtype=object)
    result = extract_video_features(paths, n_frames=2, size=16, progress=False)
    assert result.item_ids == ["a"]
    assert list(result.failures["item_id"]) == ["b", "c"]
    assert result.failures["path"].isna().all()


def test_extract_rejects_duplicate_ids(short_video):
    with pytest.raises(ValueError, match="item_id '1' appears more than once"):
        extract_video_features({1: short_video, "1": short_video}, progress=False)


def test_extract_reuses_cache(short_video, broken_files, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    paths = {"a": short_video, "b": broken_files["missing"], "c": broken_files["garbage"]}
    first = extract_video_features(paths, n_frames=2, size=32, cache=cache, progress=False)

    decoded = []
    original = video.sample_frames

    def recording(path, *args, **kwargs):
        decoded.append(path.name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(video, "sample_frames", recording)
    second = extract_video_features(paths, n_frames=2, size=32, cache=cache, progress=False)
    # The good video comes from the cache; the corrupt one is tried again because failures are never cached.
    assert decoded == ["garbage.mp4"]
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert second.item_ids == ["a"]
    assert list(second.failures["item_id"]) == ["b", "c"]
    assert second.info.to_dict() == first.info.to_dict()
    assert len(list((tmp_path / "cache" / "video" / "files").glob("*.npz"))) == 1

    other_settings = extract_video_features(paths, n_frames=3, size=32, cache=cache, progress=False)
    assert decoded[1:] == ["short.mp4", "garbage.mp4"]
    assert other_settings.info["frames_decoded"].iloc[0] > 0


# --------------------------------------------------------------------------- pretrained encoders


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_vit")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def random_frames(n, seed, size=(40, 30)):
    return np.random.default_rng(seed).integers(0, 256, (n, size[1], size[0], 3), dtype=np.uint8)


def test_visual_encoder_vit_mean_of_cls(tiny_vit):
    import torch

    encoder = VisualEncoder(tiny_vit, batch_size=2, device="cpu")
    assert encoder.pooling_ == "cls"
    assert encoder.dim == 32
    frames = random_frames(5, seed=1)
    vector = encoder.encode_video(frames)
    assert vector.shape == (32,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)

    # Manual pooling: processor, model, [CLS] of the last layer, mean over frames, L2 norm.
    pixels = encoder.processor_(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = encoder.model_(pixel_values=pixels).last_hidden_state[:, 0].numpy()
    expected = cls.mean(axis=0) / np.linalg.norm(cls.mean(axis=0))
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_frames(frames), cls, atol=1e-5)


def test_visual_encoder_batches_across_videos(tiny_vit):
    encoder = VisualEncoder(tiny_vit, batch_size=3, device="cpu")
    videos = [random_frames(4, seed=2), random_frames(2, seed=3), random_frames(5, seed=4, size=(20, 50))]
    together = encoder.encode_videos(videos)
    assert together.shape == (3, 32)
    for row, frames in zip(together, videos):
        np.testing.assert_allclose(row, encoder.encode_video(frames), atol=1e-5)


def test_visual_encoder_mean_pooling_differs(tiny_vit):
    frames = random_frames(2, seed=5)
    cls = VisualEncoder(tiny_vit, device="cpu").encode_video(frames)
    mean = VisualEncoder(tiny_vit, pooling="mean", device="cpu").encode_video(frames)
    assert np.linalg.norm(mean) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(cls, mean)


def test_visual_encoder_invalid_options(tiny_vit, tmp_path):
    with pytest.raises(ValueError, match="pooling='image_embeds' needs a CLIP model"):
        VisualEncoder(tiny_vit, pooling="image_embeds")
    with pytest.raises(ValueError, match="pooling must be one of"):
        VisualEncoder(tiny_vit, pooling="max")
    with pytest.raises(FileNotFoundError, match="model folder not found: .*no_model"):
        VisualEncoder(tmp_path / "no_model")


def test_visual_encoder_settings(tiny_vit):
    settings = VisualEncoder(tiny_vit, device="cpu").settings()
    assert settings == {"model": str(tiny_vit), "revision": None, "model_class": "ViTModel", "pooling": "cls"}


def test_extract_with_encoder(tiny_vit, short_video, broken_files):
    encoder = VisualEncoder(tiny_vit, device="cpu")
    paths = {"a": short_video, "b": broken_files["garbage"]}
    result = extract_video_features(paths, encoder=encoder, n_frames=3, size=32, progress=False)
    assert result.item_ids == ["a"]
    assert result.names == [f"visual_{i}" for i in range(32)]
    assert np.linalg.norm(result.matrix[0]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(result.matrix[0], encoder.encode_video(sample_frames(short_video, 3, size=32)), atol=1e-6)
    assert result.settings["encoder"]["model_class"] == "ViTModel"


def test_visual_encoder_clip_image_embeds(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = CLIPConfig(
        text_config={**tiny, "vocab_size": 99},
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    encoder = VisualEncoder(tmp_path, device="cpu")
    assert encoder.pooling_ == "image_embeds"
    assert encoder.dim == 16
    frames = random_frames(3, seed=6)
    pixels = encoder.processor_(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).numpy()
    expected = embeds.mean(axis=0) / np.linalg.norm(embeds.mean(axis=0))
    np.testing.assert_allclose(encoder.encode_video(frames), expected, atol=1e-5)


def test_visual_encoder_siglip_pooler(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = SiglipConfig(text_config={**tiny, "vocab_size": 99}, vision_config={**tiny, "image_size": 32, "patch_size": 8})
    model = SiglipModel(config).eval()
    model.save_pretrained(tmp_path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    encoder = VisualEncoder(tmp_path, device="cpu")
    assert type(encoder.model_).__name__ == "SiglipVisionModel"
    assert encoder.pooling_ == "pooler"
    frames = random_frames(2, seed=7)
    pixels = encoder.processor_(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=pixels).pooler_output.numpy()
    expected = pooled.mean(axis=0) / np.linalg.norm(pooled.mean(axis=0))
    np.testing.assert_allclose(encoder.encode_video(frames), expected, atol=1e-5)


# --------------------------------------------------------------------------- plotting


def test_plot_frame_strip_labels_times(short_video):
    sample = sample_frames(short_video, 4, size=32)
    fig, ax = plt.subplots()
    try:
        returned = plot_frame_strip(sample, ax=ax)
        assert returned is ax
        assert [label.get_text() for label in ax.get_xticklabels()] == ["0.3 s", "0.8 s", "1.3 s", "1.8 s"]
        image = ax.get_images()[0].get_array()
        assert image.shape == (32, 4 * 32 + 3 * 4, 3)
    finally:
        plt.close(fig)


def test_plot_frame_strip_new_axes():
    ax = plot_frame_strip(solid(RED, 2, size=(16, 16)))
    try:
        assert [label.get_text() for label in ax.get_xticklabels()] == ["0", "1"]
    finally:
        plt.close(ax.figure)


# --------------------------------------------------------------------------- real MicroLens videos


@pytest.mark.realdata
def test_real_microlens_videos(shared_datasets):
    folder = shared_datasets / "microlens-sample" / "videos"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    expected_durations = {"1002": 16.4, "10034": 7.6}
    paths = {item_id: folder / f"{item_id}.mp4" for item_id in expected_durations}
    started = time.perf_counter()
    result = extract_video_features(paths, n_frames=8, progress=False)
    elapsed = time.perf_counter() - started
    assert result.failures.empty
    assert result.item_ids == list(expected_durations)
    assert np.isfinite(result.matrix).all()
    durations = dict(zip(result.info["item_id"], result.info["duration_s"]))
    for item_id, duration in expected_durations.items():
        assert durations[item_id] == pytest.approx(duration, abs=0.2)
    assert set(result.info["codec"]) == {"hevc"}
    logging.getLogger(__name__).info("real MicroLens video features for 2 videos: %.2f s", elapsed)

    sample = sample_frames(paths["10034"], 8)
    assert sample.frames.shape == (8, 224, 224, 3)
    assert np.all(np.diff(sample.timestamps) > 0)
    assert sample.frames.std() > 10  # real pictures, not blank frames
