"""Small media files for the video and audio tests, written with PyAV.

Frames written by :func:`write_test_video` are grey two-block images whose
grey levels encode the frame index (see :func:`index_frame`), so a test can
decode any frame and read back which one it is with :func:`read_frame_index`.
The audio track is a sine wave.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

# Grey levels of the two blocks: index = 16 * left + right, each digit 0..15 in steps of 12,
# so the levels stay inside the limited YUV range (16..235) and survive lossy encoding.
_LEVEL_BASE = 24
_LEVEL_STEP = 12
MAX_INDEX = 16 * 16 - 1

# Time base for streams with explicit timestamps: milliseconds.
_MS = Fraction(1, 1000)


def index_frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """Return an RGB frame (height, width, 3) whose left and right halves encode ``index``."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"frame index must be in 0..{MAX_INDEX}; got {index}")
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:, : width // 2] = _LEVEL_BASE + _LEVEL_STEP * (index // 16)
    frame[:, width // 2 :] = _LEVEL_BASE + _LEVEL_STEP * (index % 16)
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Return the index encoded by :func:`index_frame`, read from the centres of the two halves."""
    height, width = frame.shape[:2]
    rows = slice(height // 4, 3 * height // 4)
    left = float(frame[rows, width // 8 : 3 * width // 8].mean())
    right = float(frame[rows, 5 * width // 8 : 7 * width // 8].mean())
    high = int(round((left - _LEVEL_BASE) / _LEVEL_STEP))
    low = int(round((right - _LEVEL_BASE) / _LEVEL_STEP))
    return 16 * high + low


def write_test_video(
    path: str | os.PathLike,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    with_audio: bool = True,
    colors: Sequence[tuple[int, int, int]] | None = None,
    pattern: np.ndarray | None = None,
    frame_times: Sequence[float] | None = None,
    gop_size: int = 10,
    rotation: int | None = None,
    hflip: bool = False,
    display_matrix: Sequence[int] | None = None,
    codec: str = "mpeg4",
    audio_codec: str = "aac",
    audio_frequency: float = 440.0,
    audio_amplitude: float = 0.5,
    audio_rate: int = 16000,
    audio_seconds: float | None = None,
) -> Path:
    """Write a small video (MP4 or Matroska, by the suffix) and return its path.

    Args:
        path: Target file; ``.mp4`` or ``.mkv``.
        seconds (float): Video length; ``round(seconds * fps)`` frames.
        fps (int): Frame rate for evenly timed frames.
        size (tuple): ``(width, height)`` in pixels; both even.
        with_audio (bool): Add a mono sine-wave audio stream.
        colors (sequence of RGB tuples, optional): Solid colour of each frame
            instead of the index pattern; its length sets the frame count.
        pattern (numpy.ndarray, optional): One RGB image, shape ``(height, width, 3)``,
            shown in every frame instead of the index pattern.
        frame_times (sequence of float, optional): Explicit presentation time of
            each frame in seconds (variable frame rate); sets the frame count.
        gop_size (int): Frames between keyframes.
        rotation (int, optional): Display rotation in degrees counterclockwise,
            stored as the stream's display matrix.
        hflip (bool): Add a horizontal mirror to the display matrix.
        display_matrix (sequence of 9 int, optional): Raw display matrix (16.16
            fixed point), instead of ``rotation`` and ``hflip``.
        codec (str): Video encoder name.
        audio_codec (str): Audio encoder name (``aac`` or ``pcm_s16le``).
        audio_frequency (float): Sine frequency in Hz.
        audio_amplitude (float): Peak amplitude in [0, 1]; 0 writes digital silence.
        audio_rate (int): Audio sample rate in Hz.
        audio_seconds (float, optional): Audio length; default ``seconds``.

    Returns:
        pathlib.Path: ``path``.
    """
    path = Path(path)
    if colors is not None:
        images = [np.full((size[1], size[0], 3), color, dtype=np.uint8) for color in colors]
    elif pattern is not None:
        size = (pattern.shape[1], pattern.shape[0])
        images = [pattern] * int(round(seconds * fps))
    else:
        n = len(frame_times) if frame_times is not None else int(round(seconds * fps))
        images = [index_frame(i, size) for i in range(n)]
    if frame_times is None:
        pts = [i * 1000 // fps for i in range(len(images))]
    else:
        pts = [int(round(t * 1000)) for t in frame_times]

    with av.open(str(path), mode="w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = _MS
        video.codec_context.gop_size = gop_size
        # Keyframes only every gop_size frames: without this, every new index pattern counts as a scene cut.
        video.codec_context.options = {"sc_threshold": "1000000000"}
        if codec == "mpeg4":
            video.codec_context.qmax = 2  # near-lossless, so the encoded grey levels read back exactly
        if display_matrix is not None:
            video.set_display_matrix(list(display_matrix))
        elif rotation is not None or hflip:
            video.set_display_rotation(rotation or 0, hflip=hflip)
        audio = None
        if with_audio:
            audio = container.add_stream(audio_codec, rate=audio_rate)
            audio.layout = "mono"
        for image, timestamp in zip(images, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = timestamp
            frame.time_base = _MS
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            length = seconds if audio_seconds is None else audio_seconds
            _write_sine(container, audio, length, audio_frequency, audio_amplitude, audio_rate)
    return path


def _write_sine(container, stream, seconds: float, frequency: float, amplitude: float, rate: int) -> None:
    t = np.arange(int(round(seconds * rate))) / rate
    signal = amplitude * np.sin(2 * np.pi * frequency * t)
    if stream.codec_context.name == "aac":
        samples = signal.astype(np.float32)[None, :]
        sample_format = "fltp"
    else:
        samples = np.round(signal * 32767).astype(np.int16)[None, :]
        sample_format = "s16"
    chunk = 1024
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, start : start + chunk]), format=sample_format, layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio_file(
    path: str | os.PathLike,
    *,
    seconds: float = 2.0,
    frequency: float = 440.0,
    amplitude: float = 0.5,
    rate: int = 16000,
) -> Path:
    """Write a mono PCM WAV file with a sine wave (no video stream) and return its path."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        _write_sine(container, stream, seconds, frequency, amplitude, rate)
    return path


def write_wav(path: str | os.PathLike, signal: np.ndarray, rate: int) -> Path:
    """Write samples in [-1, 1] as a 16-bit PCM WAV. Shape ``(n,)`` writes mono, ``(2, n)`` stereo."""
    path = Path(path)
    samples = np.atleast_2d(np.round(np.clip(signal, -1, 1) * 32767).astype(np.int16))
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = layout
        chunk = 1024
        for start in range(0, samples.shape[1], chunk):
            # Packed s16 frames interleave the channels: shape (1, n * channels).
            block = np.ascontiguousarray(samples[:, start : start + chunk].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_empty_video(path: str | os.PathLike, *, size: tuple[int, int] = (64, 48)) -> Path:
    """Write an MP4 with a video stream that contains no frames and return its path."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        container.start_encoding()  # writes the header even though no frame follows
    return path


def write_truncated_copy(source: str | os.PathLike, target: str | os.PathLike, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``source``'s bytes to ``target`` (a truncated download)."""
    data = Path(source).read_bytes()
    target = Path(target)
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def write_garbage(path: str | os.PathLike, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Write random bytes under a media file name and return its path."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB array as a PNG or JPEG (by the suffix) with PyAV and return its path."""
    path = Path(path)
    av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").to_image().save(path)
    return path
