"""Tests for vidrec_lab.features.audio: decoding, features of known signals, edge cases, catalog runs."""

from __future__ import annotations

import logging

import librosa
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import media  # noqa: E402
from vidrec_lab.features import audio  # noqa: E402
from vidrec_lab.features.audio import (  # noqa: E402
    FLAG_NAMES,
    MIN_TEMPO_SECONDS,
    audio_feature_names,
    audio_features,
    decode_audio,
    extract_audio_features,
    features_from_signal,
    log_mel_spectrogram,
    plot_spectrogram,
)
from vidrec_lab.features.cache import FeatureCache  # noqa: E402
from vidrec_lab.features.video import MediaError  # noqa: E402

SR = 16000
# A sine of amplitude 0.5 has RMS 0.5 / sqrt(2), that is 20 * log10(0.3536) = -9.03 dBFS.
SINE_DBFS = 20 * np.log10(0.5 / np.sqrt(2))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("audio_media")


@pytest.fixture(scope="module")
def sine_wav(media_dir):
    return media.write_audio_file(media_dir / "sine440.wav", seconds=2.0, frequency=440.0, amplitude=0.5)


@pytest.fixture(scope="module")
def sine_features(sine_wav):
    return audio_features(sine_wav)


def value(features, name):
    return float(features.vector[features.names.index(name)])


def click_track(bpm: float, seconds: float, rate: int = SR) -> np.ndarray:
    """Return short 1 kHz clicks at ``bpm`` beats per minute."""
    signal = np.zeros(int(seconds * rate))
    click = 0.9 * np.hanning(160) * np.sin(2 * np.pi * 1000 * np.arange(160) / rate)
    for beat in np.arange(0, seconds, 60.0 / bpm):
        start = int(beat * rate)
        signal[start : start + 160] = click[: len(signal) - start]
    return signal


# --------------------------------------------------------------------------- decoding


def test_decode_audio_wav_16k(sine_wav):
    signal = decode_audio(sine_wav)
    assert signal.dtype == np.float32
    assert signal.shape == (32000,)
    assert np.abs(signal).max() == pytest.approx(0.5, abs=1e-3)


def test_decode_audio_resamples_44k(media_dir):
    t = np.arange(44100) / 44100
    path = media.write_wav(media_dir / "sine44k.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44100)
    signal = decode_audio(path)
    assert abs(len(signal) - SR) <= 32  # 1 s at 16 kHz, give or take the resampler's filter delay
    centroid = librosa.feature.spectral_centroid(y=signal, sr=SR, n_fft=400, hop_length=160)[0]
    assert np.median(centroid) == pytest.approx(440, abs=20)


def test_decode_audio_stereo_to_mono(media_dir):
    t = np.arange(SR) / SR
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = media.write_wav(media_dir / "stereo.wav", np.stack([sine, sine]), SR)
    signal = decode_audio(path)
    assert signal.ndim == 1
    assert len(signal) == SR
    # FFmpeg's default downmix adds both channels at -3 dB: 2 * 0.5 / sqrt(2).
    assert np.abs(signal).max() == pytest.approx(0.5 * np.sqrt(2), abs=1e-3)


def test_decode_audio_from_video_aac(media_dir):
    path = media.write_test_video(media_dir / "with_audio.mp4", seconds=1.0, audio_frequency=440.0)
    signal = decode_audio(path)
    # AAC adds encoder delay and padding, so the decoded track is slightly longer than 1 s.
    assert SR <= len(signal) <= SR + 2048
    assert np.abs(signal).max() == pytest.approx(0.5, abs=0.05)


def test_decode_audio_no_stream(media_dir):
    path = media.write_test_video(media_dir / "silent_film.mp4", seconds=0.5, with_audio=False)
    assert decode_audio(path) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("absent.mp4", r"file not found: .*absent\.mp4"),
        ("garbage.mp4", r"cannot open .*garbage\.mp4 as a media file"),
        ("zero.wav", r"zero\.wav is empty \(0 bytes\)"),
    ],
)
def test_decode_audio_errors(media_dir, name, message):
    if name == "garbage.mp4":
        media.write_garbage(media_dir / name)
    elif name == "zero.wav":
        (media_dir / name).write_bytes(b"")
    with pytest.raises(MediaError, match=message):
        decode_audio(media_dir / name)


def test_decode_audio_invalid_rate(sine_wav):
    with pytest.raises(ValueError, match="sample_rate must be a positive integer in Hz; got 0"):
        decode_audio(sine_wav, sample_rate=0)


# --------------------------------------------------------------------------- features of known signals


def test_feature_names_match_vector(sine_features):
    assert sine_features.names == audio_feature_names()
    assert len(sine_features.names) == 64 * 2 + 20 * 2 + 7
    assert sine_features.vector.shape == (len(sine_features.names),)
    assert sine_features.vector.dtype == np.float32
    assert np.isfinite(sine_features.vector).all()


def test_sine_440_features(sine_features):
    assert value(sine_features, "spectral_centroid_hz_mean") == pytest.approx(440, abs=20)
    assert value(sine_features, "rms_dbfs_mean") == pytest.approx(SINE_DBFS, abs=0.3)
    # Two zero crossings per period: 2 * 440 / 16000 per sample.
    assert value(sine_features, "zero_crossing_rate_mean") == pytest.approx(2 * 440 / SR, abs=0.003)
    assert sine_features.duration == pytest.approx(2.0)
    assert sine_features.flags == {name: False for name in FLAG_NAMES}


def test_sine_440_loudest_mel_band(sine_features):
    means = sine_features.vector[:64]
    centres = librosa.mel_frequencies(n_mels=64 + 2, fmin=0.0, fmax=SR / 2)[1:-1]
    assert abs(centres[int(np.argmax(means))] - 440) == pytest.approx(np.min(np.abs(centres - 440)))


def test_sine_1000_centroid(media_dir):
    path = media.write_audio_file(media_dir / "sine1000.wav", seconds=1.0, frequency=1000.0)
    assert value(audio_features(path), "spectral_centroid_hz_mean") == pytest.approx(1000, abs=30)


def test_quieter_sine_is_6_db_lower(media_dir, sine_features):
    path = media.write_audio_file(media_dir / "quiet.wav", seconds=2.0, amplitude=0.25)
    quiet = audio_features(path)
    difference = value(sine_features, "rms_dbfs_mean") - value(quiet, "rms_dbfs_mean")
    assert difference == pytest.approx(20 * np.log10(2), abs=0.1)


def test_tempo_of_click_track(media_dir):
    path = media.write_wav(media_dir / "clicks120.wav", click_track(120, 8.0), SR)
    features = audio_features(path)
    assert features.flags["tempo_valid"]
    assert value(features, "tempo_bpm") == pytest.approx(120, abs=5)


def test_tempo_not_estimated_for_short_clip(media_dir):
    path = media.write_wav(media_dir / "clicks_short.wav", click_track(120, MIN_TEMPO_SECONDS - 1), SR)
    features = audio_features(path)
    assert not features.flags["tempo_valid"]
    assert value(features, "tempo_bpm") == 0.0


# --------------------------------------------------------------------------- files without usable audio


@pytest.fixture(scope="module")
def silence_vector():
    return features_from_signal(None).vector


def test_no_audio_stream_flagged(media_dir, silence_vector):
    path = media.write_test_video(media_dir / "mute.mp4", seconds=0.5, with_audio=False)
    features = audio_features(path)
    assert features.flags["no_audio"]
    assert not features.flags["silent"]
    assert features.duration == 0.0
    np.testing.assert_array_equal(features.vector, silence_vector)


def test_silence_vector_values(silence_vector):
    names = audio_feature_names()
    vector = dict(zip(names, silence_vector))
    assert np.isfinite(silence_vector).all()
    assert vector["log_mel_0_mean"] == pytest.approx(-100.0)
    assert vector["log_mel_63_std"] == 0.0
    assert vector["rms_dbfs_mean"] == pytest.approx(-100.0)
    assert vector["spectral_centroid_hz_mean"] == 0.0
    assert vector["zero_crossing_rate_mean"] == 0.0
    assert vector["tempo_bpm"] == 0.0


def test_digital_silence_flagged(media_dir, silence_vector):
    path = media.write_test_video(media_dir / "quiet_track.mp4", seconds=1.0, audio_amplitude=0.0)
    features = audio_features(path)
    assert features.flags["silent"]
    assert not features.flags["no_audio"]
    assert features.duration > 0.9
    np.testing.assert_array_equal(features.vector, silence_vector)


def test_track_shorter_than_one_frame(media_dir, silence_vector):
    path = media.write_audio_file(media_dir / "blip.wav", seconds=0.01)  # 160 samples < 400
    features = audio_features(path)
    assert features.flags["too_short"]
    assert features.duration == pytest.approx(0.01)
    np.testing.assert_array_equal(features.vector, silence_vector)


def test_features_from_signal_rejects_nan():
    with pytest.raises(ValueError, match="audio samples contain NaN or infinity"):
        features_from_signal(np.array([0.0, np.nan] * 400))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_mels": 0}, "n_mels must be a positive integer; got 0"),
        ({"n_mels": 10, "n_mfcc": 20}, r"n_mfcc \(20\) cannot exceed n_mels \(10\)"),
    ],
)
def test_features_from_signal_invalid_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        features_from_signal(np.zeros(1000), **kwargs)


# --------------------------------------------------------------------------- spectrogram and plot


def test_log_mel_spectrogram_shape(sine_wav):
    spectrogram = log_mel_spectrogram(sine_wav)
    # 32000 samples, 160-sample hop, centred frames: 1 + 32000 // 160 columns.
    assert spectrogram.shape == (64, 201)
    assert np.isfinite(spectrogram).all()
    assert spectrogram.min() >= -100.0 - 1e-3  # the -100 dB floor, up to float32 rounding


def test_log_mel_spectrogram_without_audio(media_dir):
    path = media.write_test_video(media_dir / "mute_for_plot.mp4", seconds=0.5, with_audio=False)
    with pytest.raises(MediaError, match="has no audio stream, so there is no spectrogram"):
        log_mel_spectrogram(path)


def test_plot_spectrogram_returns_axes(sine_wav):
    fig, ax = plt.subplots()
    try:
        title = "猫咪视频 440 Hz"
        returned = plot_spectrogram(log_mel_spectrogram(sine_wav), ax=ax, title=title)
        assert returned is ax
        assert ax.get_title() == title
        assert ax.get_xlabel() == "Time"
        assert ax.get_ylabel() == "Hz"
        assert len(ax.collections) == 1
    finally:
        plt.close(fig)


def test_plot_spectrogram_new_axes():
    ax = plot_spectrogram(np.full((64, 10), -50.0), colorbar=False)
    try:
        assert len(ax.figure.axes) == 1
    finally:
        plt.close(ax.figure)


def test_plot_spectrogram_rejects_1d():
    with pytest.raises(ValueError, match=r"spectrogram must be a non-empty \(n_mels, frames\) array; got shape \(5,\)"):
        plot_spectrogram(np.zeros(5))


# --------------------------------------------------------------------------- catalog extraction


@pytest.fixture(scope="module")
def catalog(media_dir, sine_wav):
    chinese = media_dir / "猫咪.wav"
    chinese.write_bytes(sine_wav.read_bytes())
    return {
        "sine": sine_wav,
        "视频": chinese,
        "mute": media.write_test_video(media_dir / "mute_catalog.mp4", seconds=0.5, with_audio=False),
        "broken": media.write_garbage(media_dir / "broken.mp4"),
        "gone": media_dir / "gone.mp4",
        "blank": "",
    }


def test_extract_audio_collects_failures(catalog, caplog):
    with caplog.at_level(logging.WARNING, logger=audio.__name__):
        result = extract_audio_features(catalog, progress=False)
    assert result.item_ids == ["sine", "视频", "mute"]
    assert result.names == audio_feature_names()
    assert result.matrix.shape == (3, len(result.names))
    assert np.isfinite(result.matrix).all()
    np.testing.assert_array_equal(result.matrix[0], result.matrix[1])
    assert list(result.failures["item_id"]) == ["broken", "gone", "blank"]
    errors = dict(zip(result.failures["item_id"], result.failures["error"]))
    assert "cannot open" in errors["broken"]
    assert "file not found" in errors["gone"]
    assert errors["blank"] == "no path given for this item"
    for item_id in ("broken", "gone", "blank"):
        assert f"audio features: item {item_id} failed" in caplog.text
    flags = result.flags.set_index("item_id")
    assert bool(flags.loc["mute", "no_audio"])
    assert not bool(flags.loc["sine", "no_audio"])
    assert flags.loc["sine", "duration_s"] == pytest.approx(2.0)


def test_extract_audio_full_matrix(catalog):
    result = extract_audio_features(catalog, full_matrix=True, progress=False)
    assert result.item_ids == list(catalog)
    np.testing.assert_array_equal(result.missing, [False, False, False, True, True, True])
    assert not result.matrix[3:].any()
    assert np.isfinite(result.matrix).all()
    np.testing.assert_allclose(result.matrix[0], audio_features(catalog["sine"]).vector)


def test_extract_audio_reuses_cache(catalog, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    first = extract_audio_features(catalog, cache=cache, progress=False)

    computed = []
    original = audio.audio_features

    def recording(path, **kwargs):
        computed.append(path.name)
        return original(path, **kwargs)

    monkeypatch.setattr(audio, "audio_features", recording)
    second = extract_audio_features(catalog, cache=cache, progress=False)
    # Only the corrupt file is tried again; failures are never cached.
    assert computed == ["broken.mp4"]
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert second.flags.equals(first.flags)
    assert list(second.failures["item_id"]) == ["broken", "gone", "blank"]


# --------------------------------------------------------------------------- real MicroLens videos


@pytest.mark.realdata
def test_real_microlens_audio(shared_datasets):
    folder = shared_datasets / "microlens-sample" / "videos"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    expected_durations = {"1002": 16.4, "10034": 7.6}
    result = extract_audio_features({item_id: folder / f"{item_id}.mp4" for item_id in expected_durations}, progress=False)
    assert result.failures.empty
    assert np.isfinite(result.matrix).all()
    flags = result.flags.set_index("item_id")
    for item_id, duration in expected_durations.items():
        assert flags.loc[item_id, "duration_s"] == pytest.approx(duration, abs=0.2)
        assert not bool(flags.loc[item_id, "no_audio"])
        assert not bool(flags.loc[item_id, "silent"])
        assert bool(flags.loc[item_id, "tempo_valid"])  # both are longer than MIN_TEMPO_SECONDS
    loudness = result.to_frame()["rms_dbfs_mean"]
    assert loudness.between(-60, 0).all()
