"""Audio features of videos: the soundtrack decoded with PyAV, summarised with librosa.

PyAV decodes the audio stream and resamples it to 16 kHz mono. librosa then
summarises it over 25 ms frames with a 10 ms hop and 64 mel bands, the
framing of Google's VGGish audio model (``vggish_params.py`` in
tensorflow/models), though over 0-8 kHz instead of its 125-7500 Hz. The
features are the per-band mean and standard deviation of the log-mel
spectrogram and of 20 MFCCs, RMS loudness in dBFS, spectral centroid,
zero-crossing rate, and a tempo estimate for clips long enough to contain a
few beats.

A file without an audio stream, a silent track and a track shorter than one
analysis frame give a defined vector, the features of digital silence, and
a flag that names the reason. Vectors never contain NaN.

librosa is imported on first use, because importing it takes seconds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import av
import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_ITEM
from vidrec_lab.features.cache import FeatureCache, hash_file
from vidrec_lab.features.video import (
    MediaError,
    MediaFeatureResult,
    _assemble,
    _check_media_file,
    _open_media,
    _run_per_file,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; speech and audio-event models use 16 kHz mono
N_FFT = 400  # 25 ms analysis frame at 16 kHz
HOP_LENGTH = 160  # 10 ms hop at 16 kHz
N_MELS = 64
N_MFCC = 20
# librosa's tempo estimator autocorrelates onset strength over 8 s windows (ac_size=8.0). Below about
# 5 s a clip contains too few beats (five at 60 BPM) for the estimate to mean anything.
MIN_TEMPO_SECONDS = 5.0
# Peak level at or below which a track counts as digital silence: under one 16-bit step (-90.3 dBFS).
SILENCE_PEAK_DB = -90.0
# Floors that keep logarithms finite: -100 dB for mel power, -100 dBFS for RMS amplitude.
_POWER_FLOOR = 1e-10
_AMPLITUDE_FLOOR = 1e-5

FLAG_NO_AUDIO = "no_audio"
FLAG_SILENT = "silent"
FLAG_TOO_SHORT = "too_short"
FLAG_TEMPO_VALID = "tempo_valid"
FLAG_NAMES = (FLAG_NO_AUDIO, FLAG_SILENT, FLAG_TOO_SHORT, FLAG_TEMPO_VALID)
COL_DURATION = "duration_s"
CACHE_NAMESPACE = "audio"


@dataclass
class AudioFeatures:
    """Audio features of one file.

    Attributes:
        vector (numpy.ndarray): float32 features named by ``names``; never NaN.
        names (list of str): Feature names (see :func:`audio_feature_names`).
        flags (dict of str to bool): ``no_audio``: the file has no audio
            stream. ``silent``: the peak is at or below -90 dBFS.
            ``too_short``: fewer samples than one 25 ms frame.
            ``tempo_valid``: the track is at least ``min_tempo_seconds`` long
            and has onsets, so ``tempo_bpm`` is an estimate rather than 0.
            When any of the first three is set, the vector contains the
            features of digital silence.
        duration (float): Length of the decoded audio in seconds (0.0 without audio).
    """

    vector: np.ndarray
    names: list[str]
    flags: dict[str, bool]
    duration: float = 0.0


def audio_feature_names(n_mels: int = N_MELS, n_mfcc: int = N_MFCC) -> list[str]:
    """Return the names of the :func:`audio_features` vector, in order."""
    names = [f"log_mel_{i}_mean" for i in range(n_mels)]
    names += [f"log_mel_{i}_std" for i in range(n_mels)]
    names += [f"mfcc_{i}_mean" for i in range(n_mfcc)]
    names += [f"mfcc_{i}_std" for i in range(n_mfcc)]
    names += [
        "rms_dbfs_mean",
        "rms_dbfs_std",
        "spectral_centroid_hz_mean",
        "spectral_centroid_hz_std",
        "zero_crossing_rate_mean",
        "zero_crossing_rate_std",
        "tempo_bpm",
    ]
    return names


def decode_audio(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Decode the first audio stream of a file to mono float32 samples at ``sample_rate``.

    FFmpeg's resampler (``av.AudioResampler``) converts the rate and mixes
    the channels down with its default matrix, which adds each channel of a
    stereo track at -3 dB.

    Args:
        path (str or path): Video or audio file.
        sample_rate (int): Output rate in Hz.

    Returns:
        numpy.ndarray or None: Samples in [-1, 1], shape ``(n,)``; None when the
        file has no audio stream.

    Raises:
        MediaError: when the file is missing, empty or cannot be decoded.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer in Hz; got {sample_rate!r}")
    path = _check_media_file(path)
    container = _open_media(path)
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        stream.codec_context.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))  # flush
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: decoding the audio stream failed: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def audio_features(
    path: str | os.PathLike,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    n_mfcc: int = N_MFCC,
    min_tempo_seconds: float = MIN_TEMPO_SECONDS,
) -> AudioFeatures:
    """Compute the audio feature vector of a video or audio file.

    Args:
        path (str or path): Video or audio file.
        sample_rate (int): Analysis rate in Hz; the 25 ms frame and 10 ms hop scale with it.
        n_mels (int): Mel bands of the log-mel spectrogram.
        n_mfcc (int): MFCCs kept.
        min_tempo_seconds (float): Shortest track for which a tempo is estimated.

    Returns:
        AudioFeatures: Vector, names, flags and duration.

    Raises:
        MediaError: when the file is missing, empty or cannot be decoded. A
            file that decodes but has no audio is not an error (``no_audio``).
    """
    signal = decode_audio(path, sample_rate=sample_rate)
    return features_from_signal(
        signal, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc, min_tempo_seconds=min_tempo_seconds
    )


def features_from_signal(
    signal: np.ndarray | None,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    n_mfcc: int = N_MFCC,
    min_tempo_seconds: float = MIN_TEMPO_SECONDS,
) -> AudioFeatures:
    """Compute the :func:`audio_features` vector from mono samples (None: no audio stream).

    Args:
        signal (numpy.ndarray or None): Mono samples in [-1, 1] at ``sample_rate``.
        sample_rate, n_mels, n_mfcc, min_tempo_seconds: As in :func:`audio_features`.

    Returns:
        AudioFeatures: Vector, names, flags and duration.
    """
    for name, value in (("n_mels", n_mels), ("n_mfcc", n_mfcc)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels}); MFCCs are computed from the mel bands")
    names = audio_feature_names(n_mels, n_mfcc)
    flags = {flag: False for flag in FLAG_NAMES}
    n_fft, hop_length = _framing(sample_rate)
    if signal is None:
        flags[FLAG_NO_AUDIO] = True
        return AudioFeatures(_silence_vector(sample_rate, n_mels, n_mfcc), names, flags, 0.0)

    signal = np.asarray(signal, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(signal)):
        raise ValueError("audio samples contain NaN or infinity")
    duration = len(signal) / sample_rate
    if len(signal) < n_fft:
        flags[FLAG_TOO_SHORT] = True
    elif _peak_db(signal) <= SILENCE_PEAK_DB:
        flags[FLAG_SILENT] = True
    if flags[FLAG_TOO_SHORT] or flags[FLAG_SILENT]:
        return AudioFeatures(_silence_vector(sample_rate, n_mels, n_mfcc), names, flags, duration)

    import librosa

    log_mel = _log_mel(signal, sample_rate, n_mels)  # (n_mels, frames)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc)  # (n_mfcc, frames)
    rms = librosa.feature.rms(y=signal, frame_length=n_fft, hop_length=hop_length)[0]
    rms_db = librosa.amplitude_to_db(rms, ref=1.0, amin=_AMPLITUDE_FLOOR, top_db=None)
    centroid = librosa.feature.spectral_centroid(y=signal, sr=sample_rate, n_fft=n_fft, hop_length=hop_length)[0]
    zcr = librosa.feature.zero_crossing_rate(signal, frame_length=n_fft, hop_length=hop_length)[0]
    tempo = 0.0
    if duration >= min_tempo_seconds:
        onset = librosa.onset.onset_strength(y=signal, sr=sample_rate, hop_length=hop_length)
        if onset.max() > 0:
            tempo = float(librosa.feature.tempo(onset_envelope=onset, sr=sample_rate, hop_length=hop_length)[0])
            flags[FLAG_TEMPO_VALID] = True

    vector = np.concatenate(
        [
            log_mel.mean(axis=1),
            log_mel.std(axis=1),
            mfcc.mean(axis=1),
            mfcc.std(axis=1),
            [rms_db.mean(), rms_db.std(), centroid.mean(), centroid.std(), zcr.mean(), zcr.std(), tempo],
        ]
    ).astype(np.float32)
    if not np.all(np.isfinite(vector)):
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(vector))]
        raise RuntimeError(f"audio features {bad} are not finite; this is a bug, please report it with the file")
    return AudioFeatures(vector, names, flags, duration)


def _framing(sample_rate: int) -> tuple[int, int]:
    """Return ``(n_fft, hop_length)`` for 25 ms frames and a 10 ms hop at ``sample_rate``."""
    return int(round(N_FFT * sample_rate / SAMPLE_RATE)), int(round(HOP_LENGTH * sample_rate / SAMPLE_RATE))


def _peak_db(signal: np.ndarray) -> float:
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    return 20 * np.log10(max(peak, 1e-12))


def _log_mel(signal: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """Return the log-mel power spectrogram in dB (reference power 1, floor -100 dB), shape ``(n_mels, frames)``."""
    import librosa

    n_fft, hop_length = _framing(sample_rate)
    mel = librosa.feature.melspectrogram(
        y=signal, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0
    )
    return librosa.power_to_db(mel, ref=1.0, amin=_POWER_FLOOR, top_db=None)


def _silence_vector(sample_rate: int, n_mels: int, n_mfcc: int) -> np.ndarray:
    """Return the features of digital silence: dB floors, zero centroid, zero crossings and tempo."""
    import librosa

    log_mel = np.full((n_mels, 1), 10 * np.log10(_POWER_FLOOR))
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc)
    rms_floor = 20 * np.log10(_AMPLITUDE_FLOOR)
    return np.concatenate(
        [
            log_mel[:, 0],
            np.zeros(n_mels),
            mfcc[:, 0],
            np.zeros(n_mfcc),
            [rms_floor, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    ).astype(np.float32)


def log_mel_spectrogram(
    path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS
) -> np.ndarray:
    """Return the log-mel spectrogram of a file's audio in dB, shape ``(n_mels, frames)`` with a 10 ms hop.

    Raises:
        MediaError: when the file cannot be decoded, has no audio stream or its
            audio is shorter than one 25 ms frame.
    """
    signal = decode_audio(path, sample_rate=sample_rate)
    if signal is None:
        raise MediaError(f"{path} has no audio stream, so there is no spectrogram to compute")
    n_fft, _ = _framing(sample_rate)
    if len(signal) < n_fft:
        raise MediaError(
            f"{path}: the audio has {len(signal)} samples, fewer than one {n_fft}-sample analysis frame"
        )
    return _log_mel(signal, sample_rate, n_mels)


def plot_spectrogram(
    spectrogram: np.ndarray, ax=None, *, sample_rate: int = SAMPLE_RATE, title: str | None = None, colorbar: bool = True
):
    """Draw a log-mel spectrogram from :func:`log_mel_spectrogram` (time in s, mel-scaled Hz) and return the Axes.

    Args:
        spectrogram (numpy.ndarray): dB values, shape ``(n_mels, frames)``.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        sample_rate (int): Rate the spectrogram was computed at, for the axis labels.
        title (str, optional): Axes title (Chinese titles render when a CJK font is installed).
        colorbar (bool): Add a dB colour bar beside the axes.
    """
    import librosa.display

    from vidrec_lab.viz import new_axes

    spectrogram = np.asarray(spectrogram)
    if spectrogram.ndim != 2 or spectrogram.size == 0:
        raise ValueError(f"spectrogram must be a non-empty (n_mels, frames) array; got shape {spectrogram.shape}")
    if ax is None:
        _, ax = new_axes()
    _, hop_length = _framing(sample_rate)
    mesh = librosa.display.specshow(
        spectrogram,
        sr=sample_rate,
        hop_length=hop_length,
        x_axis="time",
        y_axis="mel",
        fmax=sample_rate / 2,
        ax=ax,
    )
    ax.grid(False)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, format="%+.0f dB")
    return ax


@dataclass
class AudioFeatureResult(MediaFeatureResult):
    """Audio features for a catalog; ``flags`` has one row per decoded item (item_id, duration_s and the flags)."""

    flags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[COL_ITEM, COL_DURATION, *FLAG_NAMES]))
    settings: dict = field(default_factory=dict)


def extract_audio_features(
    paths: Mapping[str, str | os.PathLike | None] | pd.Series,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    n_mfcc: int = N_MFCC,
    min_tempo_seconds: float = MIN_TEMPO_SECONDS,
    full_matrix: bool = False,
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> AudioFeatureResult:
    """Compute one audio vector per item, collecting per-file errors instead of stopping.

    A missing, empty, corrupt or truncated file becomes a row of ``failures``
    (logged as one warning with the item id) and the other items are still
    processed. A file without an audio stream is not a failure: it gets the
    silence vector and ``no_audio`` in ``flags``.

    Args:
        paths (mapping or pandas.Series): Item id to video or audio path.
        sample_rate, n_mels, n_mfcc, min_tempo_seconds: As in :func:`audio_features`.
        full_matrix (bool): Return a row for every item in input order, with
            all-zero rows for failed items marked in ``missing``.
        cache (FeatureCache, optional): Store each file's features under the
            settings and the SHA-256 of the file, and reuse them on later runs.
            Failed files are not stored.
        progress (bool): Show a tqdm progress bar.

    Returns:
        AudioFeatureResult: Matrix, item ids, names, failures, ``missing``,
        per-item ``flags`` and the ``settings`` used.
    """
    settings = {
        "sample_rate": sample_rate,
        "n_mels": n_mels,
        "n_mfcc": n_mfcc,
        "min_tempo_seconds": min_tempo_seconds,
    }
    names = audio_feature_names(n_mels, n_mfcc)
    features_from_signal(None, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc)  # validate settings first

    def compute(path: Path) -> dict[str, np.ndarray]:
        features = audio_features(
            path, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc, min_tempo_seconds=min_tempo_seconds
        )
        return {
            "vector": features.vector,
            "flags": np.array([features.flags[f] for f in FLAG_NAMES]),
            "duration_s": np.float64(features.duration),
        }

    def extract(path: Path) -> dict[str, np.ndarray]:
        if cache is None:
            return compute(path)
        _check_media_file(path)
        return cache.get_or_compute_arrays(CACHE_NAMESPACE, settings, hash_file(path), lambda: compute(path))

    item_ids, results, failures = _run_per_file(
        paths, extract, desc="audio features", progress=progress, log=logger
    )
    flags = pd.DataFrame(
        [(item_id, r["duration_s"].item(), *map(bool, r["flags"])) for item_id, r in zip(item_ids, results)],
        columns=[COL_ITEM, COL_DURATION, *FLAG_NAMES],
    )
    matrix, row_ids, missing = _assemble(paths, item_ids, [r["vector"] for r in results], len(names), full_matrix)
    return AudioFeatureResult(
        matrix=matrix,
        item_ids=row_ids,
        names=names,
        failures=failures,
        missing=missing,
        flags=flags,
        settings=settings,
    )
