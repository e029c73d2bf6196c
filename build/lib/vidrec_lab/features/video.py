"""Visual features of videos: frame sampling with PyAV, a pretrained image encoder, and a hand-made descriptor.

* :func:`sample_frames` decodes ``n`` frames spread over a video (or one per
  time interval). It seeks to each target time and decodes forward from the
  keyframe before it, so cost grows with the number of frames requested, not
  with the video's length. Cover images (JPEG, PNG) open as one-frame videos.
* :class:`VisualEncoder` turns frames into one L2-normalised vector per video
  with any Hugging Face image model (ViT, CLIP or SigLIP vision towers).
* :func:`describe_frames` is the offline default: colour histograms,
  brightness, contrast, frame-difference energy and a shot-change rate,
  computed with NumPy and no model.
* :func:`extract_video_features` runs either over a catalog and reports the
  files that failed in a table instead of stopping at the first one.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import av
import numpy as np
import pandas as pd
from matplotlib.colors import rgb_to_hsv
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_ITEM
from vidrec_lab.features.cache import FeatureCache, hash_file
from vidrec_lab.tables import DataError

logger = logging.getLogger(__name__)

# Columns of the failure table returned by the extract_* functions.
COL_PATH = "path"
COL_ERROR = "error"
FAILURE_COLUMNS = (COL_ITEM, COL_PATH, COL_ERROR)

# Columns of VideoFeatureResult.info, one row per decoded video.
INFO_COLUMNS = (COL_ITEM, "duration_s", "fps", "codec", "width", "height", "rotation", "frames_decoded")

FIT_MODES = ("crop", "pad")
# Part of the cache key of describe_frames vectors; bump when the descriptor's definition changes.
DESCRIPTOR_VERSION = 1
CACHE_NAMESPACE = "video"
POOLING_MODES = ("auto", "cls", "pooler", "mean", "image_embeds")

# Demuxers that read single still images.
_IMAGE_DEMUXERS = ("image2",)
_IMAGE_DEMUXER_SUFFIX = "_pipe"

# A frame counts as reaching a target time when it starts at most this early (float rounding of pts * time_base).
_TIME_TOLERANCE_S = 1e-6
# First step back when a seek lands after the target; it doubles until the seek lands before it.
_RESEEK_STEP_S = 1.0

# ITU-R BT.601 luma weights, the ones JPEG and most video decoders use for grey.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


class MediaError(DataError):
    """Raised when a media file is missing, unreadable or lacks the stream a step needs."""


# --------------------------------------------------------------------------- frame sampling


@dataclass(frozen=True)
class VideoInfo:
    """Description of a video file as its streams state it: length, rate, codec, display size and orientation.

    Attributes:
        path (str): The file.
        duration (float): Length in seconds; 0.0 for a still image.
        fps (float or None): Average frame rate; None when the file does not state one.
        codec (str): Video codec name (``"hevc"``, ``"h264"``, ``"png"``).
        width, height (int): Display size in pixels, after rotation.
        rotation (int): Display rotation in degrees counterclockwise, a multiple of 90.
        mirrored (bool): Whether the display matrix also mirrors the picture.
        is_image (bool): True for a still image opened as a one-frame video.
    """

    path: str
    duration: float
    fps: float | None
    codec: str
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False
    is_image: bool = False


@dataclass
class FrameSample:
    """Frames decoded from one video.

    Attributes:
        frames (numpy.ndarray): uint8 RGB, shape ``(n, height, width, 3)``, upright.
        timestamps (numpy.ndarray): Presentation time of each returned frame in
            seconds from the start of the stream.
        targets (numpy.ndarray): The times that were requested; frame ``i`` is
            the first frame at or after ``targets[i]`` (or the last frame).
        info (VideoInfo): Source description.
        frames_decoded (int): Frames the decoder produced in total, including
            the ones decoded only to reach a target.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    targets: np.ndarray
    info: VideoInfo
    frames_decoded: int

    def __len__(self) -> int:
        return len(self.frames)


def sample_times(duration: float, n_frames: int = 8, *, per_second: float | None = None) -> np.ndarray:
    """Return the target times (seconds) at which :func:`sample_frames` takes frames.

    The video is cut into equal segments and the centre of each segment is a
    target, so the first and last frames (often black or a fade) are not
    picked. ``n_frames`` segments of ``duration / n_frames`` seconds, or with
    ``per_second`` segments of ``1 / per_second`` seconds whose centre lies
    inside the video.

    Args:
        duration (float): Video length in seconds.
        n_frames (int): Number of targets when ``per_second`` is None.
        per_second (float, optional): Targets per second of video; overrides ``n_frames``.

    Returns:
        numpy.ndarray: Ascending times; at least one.

    Example:
        ``sample_times(2.0, 4)`` is ``[0.25, 0.75, 1.25, 1.75]`` and
        ``sample_times(2.5, per_second=1)`` is ``[0.5, 1.5]``.
    """
    if per_second is None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
            raise ValueError(f"n_frames must be a positive integer; got {n_frames!r}")
        if duration <= 0:
            return np.zeros(int(n_frames))
        return (np.arange(int(n_frames)) + 0.5) * (duration / n_frames)
    if not per_second > 0 or not math.isfinite(per_second):
        raise ValueError(f"per_second must be a positive number of frames per second; got {per_second!r}")
    if duration <= 0:
        return np.zeros(1)
    step = 1.0 / per_second
    times = (np.arange(math.ceil(duration * per_second)) + 0.5) * step
    times = times[times < duration]
    if len(times) == 0:
        return np.array([duration / 2])
    return times


def sample_frames(
    path: str | os.PathLike,
    n_frames: int = 8,
    *,
    per_second: float | None = None,
    size: int | None = 224,
    fit: str = "crop",
) -> FrameSample:
    """Decode frames spread over a video, upright and resized.

    Target times come from :func:`sample_times`. For each target the
    container seeks back to the keyframe at or before it. The decoder then
    runs forward to the first frame whose presentation time (pts times the
    stream's time base) is at or after the target. Variable frame rate
    videos are therefore sampled by time, not by frame count. When the next
    target lies after the current decoder position and no keyframe sits
    between them, decoding simply continues. Targets past the last frame get the last frame, and
    targets that land on the same frame repeat it.

    A display matrix in the file (portrait phone videos) is applied, so the
    frames come out as a player shows them. A still image (JPEG, PNG) is
    returned as a single frame whatever ``n_frames`` is.

    Args:
        path (str or path): Video or image file.
        n_frames (int): Frames to return, spread evenly over the duration.
        per_second (float, optional): Frames per second of video instead of a
            fixed count; a long video then gives many frames (memory grows as
            ``n * size * size * 3`` bytes).
        size (int or None): Side of the square output in pixels; None keeps the
            decoded size (square pixels, upright).
        fit (str): ``"crop"`` scales the shorter side to ``size`` and cuts the
            centre square, as image models expect. ``"pad"`` scales the longer
            side to ``size`` and pads the rest with black.

    Returns:
        FrameSample: The frames, their timestamps and the source description.

    Raises:
        MediaError: when the file is missing, empty, unreadable, has no video
            stream or yields no frame.
        ValueError: on an invalid ``n_frames``, ``per_second``, ``size`` or ``fit``.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {list(FIT_MODES)}; got {fit!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive number of pixels or None; got {size!r}")
    path = _check_media_file(path)
    container = _open_media(path)
    with container:
        stream = _video_stream(container, path)
        if _is_image(container):
            return _sample_image(container, stream, path, size=size, fit=fit)
        stream.codec_context.thread_type = "AUTO"  # frame and slice threads; HEVC decodes several times faster
        duration = _stream_duration(container, stream, path)
        targets = sample_times(duration, n_frames, per_second=per_second)
        reader = _FrameReader(container, stream, path)
        frames, timestamps = [], []
        transform = None
        for target in targets:
            frame, time = reader.frame_at(float(target))
            if transform is None:
                transform = _frame_transform(frame)
            frames.append(_to_rgb(frame, transform, stream, size=size, fit=fit))
            timestamps.append(time)
        info = _video_info(path, stream, duration, transform, is_image=False)
        shortfall = float(targets[-1]) - reader.last_time
        if reader.reached_end and shortfall > max(1.0, 0.1 * duration):
            logger.warning(
                "%s: frames stop at %.2f s but the file states %.2f s; it may be truncated, "
                "so the last %.2f s of targets got the last frame",
                path,
                reader.last_time,
                duration,
                shortfall,
            )
        return FrameSample(
            frames=np.stack(frames),
            timestamps=np.asarray(timestamps, dtype=np.float64),
            targets=np.asarray(targets, dtype=np.float64),
            info=info,
            frames_decoded=reader.decoded,
        )


def _check_media_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if not path.is_file():
        raise MediaError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes); the download or copy probably failed")
    return path


def _open_media(path: Path):
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot open {path} as a media file: {exc}") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise MediaError(f"{path} has no video stream (streams found: {', '.join(kinds)})")
    return container.streams.video[0]


def _is_image(container) -> bool:
    name = container.format.name
    return name in _IMAGE_DEMUXERS or name.endswith(_IMAGE_DEMUXER_SUFFIX)


def _stream_duration(container, stream, path: Path) -> float:
    """Return the video length in seconds from the stream, the container or, failing both, the packets."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    # Demuxing packets without decoding them is cheap, and the sampler seeks before its first frame anyway.
    # NOTE: none of the test files reaches this scan; MP4, Matroska, AVI, NUT and MPEG-TS state a duration.
    start = stream.start_time or 0
    end = None
    n_packets = 0
    try:
        for packet in container.demux(stream):
            n_packets += packet.size > 0
            if packet.pts is not None:
                packet_end = packet.pts + (packet.duration or 0)
                end = packet_end if end is None else max(end, packet_end)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {path} to find its duration: {exc}") from exc
    if n_packets == 0:
        raise MediaError(f"{path} has a video stream without any packet (zero-length video)")
    if end is None:
        raise MediaError(
            f"{path} has no timestamps (a raw elementary stream?), so frames cannot be sampled by time; "
            "remux it into MP4 or Matroska first, e.g. ffmpeg -i INPUT -c copy OUTPUT.mp4"
        )
    return float((end - start) * stream.time_base)


class _FrameReader:
    """Decode frames at target times, seeking when a keyframe lies between the decoder and the target."""

    def __init__(self, container, stream, path: Path):
        self.container = container
        self.stream = stream
        self.path = path
        self.time_base = stream.time_base
        self.start_pts = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate
        self.frame_step = float(1 / rate) if rate else 0.0
        self.keyframes = np.array([], dtype=np.int64)
        self._index_size = -1
        self.decoded = 0
        self.reached_end = False  # the decoder ran out of frames before a target
        self._frames: Iterator | None = None
        self._current: tuple | None = None  # last decoded (frame, time, pts)

    def frame_at(self, target: float):
        """Return ``(frame, time)`` for the first frame at or after ``target`` seconds (or the last frame)."""
        if self._current is not None and self._current[1] >= target - _TIME_TOLERANCE_S:
            return self._current[0], self._current[1]
        if self._needs_seek(target):
            self._seek_before(target)
        for item in self._frames:
            self._current = item
            if item[1] >= target - _TIME_TOLERANCE_S:
                break
        else:
            self.reached_end = True
        if self._current is None:
            raise MediaError(f"{self.path}: no video frame could be decoded (zero-length or damaged video)")
        return self._current[0], self._current[1]

    @property
    def last_time(self) -> float:
        """Time of the last decoded frame in seconds (0.0 before any)."""
        return 0.0 if self._current is None else self._current[1]

    def _needs_seek(self, target: float) -> bool:
        if self._frames is None or self._current is None:
            return True
        # Some demuxers (Matroska) fill their index only on the first seek, so reread it when it grows.
        index = getattr(self.stream, "index_entries", None)  # tested with PyAV 18.1; older releases may lack it
        if index is not None and len(index) != self._index_size:
            self._index_size = len(index)
            self.keyframes = _keyframe_timestamps(index)
        if len(self.keyframes) == 0:
            return True
        # Keyframe index timestamps are decode times, close enough to choose between seeking and decoding on.
        target_pts = self.start_pts + int(target / self.time_base)
        position = np.searchsorted(self.keyframes, target_pts, side="right") - 1
        keyframe = self.keyframes[position] if position >= 0 else self.keyframes[0]
        return keyframe > self._current[2]

    def _seek_before(self, target: float) -> None:
        back = 0.0
        while True:
            seek_time = max(target - back, 0.0)
            try:
                self.container.seek(
                    self.start_pts + int(seek_time / self.time_base), stream=self.stream, backward=True
                )
            except av.error.FFmpegError as exc:
                raise MediaError(f"{self.path}: seeking to {seek_time:.3f} s failed: {exc}") from exc
            self._frames = self._decode()
            self._current = None
            first = next(self._frames, None)
            if first is None and seek_time > 0:
                back = max(_RESEEK_STEP_S, 2 * back)
                continue
            if first is None:
                self._frames = iter(())
                return
            # Some demuxers land after the requested time; step further back so no frame is skipped.
            if first[1] <= target + _TIME_TOLERANCE_S or seek_time <= 0:
                self._frames = itertools.chain([first], self._frames)
                return
            back = max(_RESEEK_STEP_S, 2 * back)

    def _decode(self) -> Iterator[tuple]:
        previous_time = None
        try:
            for frame in self.container.decode(self.stream):
                self.decoded += 1
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is not None:
                    time = float((pts - self.start_pts) * self.time_base)
                else:
                    # NOTE: a frame without pts or dts gets its time from the previous frame and the average rate.
                    time = 0.0 if previous_time is None else previous_time + self.frame_step
                    pts = self.start_pts + int(time / self.time_base)
                previous_time = time
                yield frame, time, pts
        except av.error.FFmpegError as exc:
            raise MediaError(f"{self.path}: decoding failed: {exc}") from exc


def _keyframe_timestamps(index) -> np.ndarray:
    """Return the sorted keyframe timestamps of a demuxer index (``stream.index_entries``)."""
    stamps = [entry.timestamp for entry in index if entry.flags & 1]  # 1 is AVINDEX_KEYFRAME
    return np.sort(np.asarray(stamps, dtype=np.int64))


def _sample_image(container, stream, path: Path, *, size: int | None, fit: str) -> FrameSample:
    try:
        frame = next(container.decode(stream), None)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: decoding the image failed: {exc}") from exc
    if frame is None:
        raise MediaError(f"{path}: the image could not be decoded")
    transform = _frame_transform(frame)
    rgb = _to_rgb(frame, transform, stream, size=size, fit=fit)
    info = _video_info(path, stream, 0.0, transform, is_image=True)
    return FrameSample(
        frames=rgb[None],
        timestamps=np.zeros(1),
        targets=np.zeros(1),
        info=info,
        frames_decoded=1,
    )


def _video_info(path, stream, duration, transform, *, is_image) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    transpose = transform[0]
    coded_w, coded_h = stream.codec_context.width, stream.codec_context.height
    return VideoInfo(
        path=str(path),
        duration=float(duration),
        fps=None if is_image or not rate else float(rate),
        codec=stream.codec_context.name,
        width=int(coded_h if transpose else coded_w),
        height=int(coded_w if transpose else coded_h),
        rotation=_rotation_degrees(transform),
        mirrored=_is_mirrored(transform),
        is_image=is_image,
    )


# --------------------------------------------------------------------------- orientation and resizing


def display_transform(matrix: Sequence[int] | None) -> tuple[bool, bool, bool]:
    """Turn a display matrix into the array operations that show the frame upright.

    The matrix is FFmpeg's ``AV_PKT_DATA_DISPLAYMATRIX`` (nine 32-bit
    integers, 16.16 fixed point, row vector times matrix, y pointing down).
    Its 2x2 part ``[[a, b], [c, d]]`` maps a pixel offset ``(x, y)`` to
    ``(a*x + c*y, b*x + d*y)``. This matches the autorotation of the
    ``ffmpeg`` and ``ffplay`` tools (``transpose``, ``hflip`` and ``vflip``
    filters chosen from the matrix signs). For example ``a = 0, b = 1,
    c = -1, d = 0``, the matrix of a portrait phone video, turns the frame
    90 degrees clockwise.

    Args:
        matrix (sequence of 9 int or None): The display matrix; None means upright.

    Returns:
        tuple: ``(transpose, flip_horizontal, flip_vertical)``, applied in that order.
    """
    if matrix is None:
        return (False, False, False)
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape != (9,):
        raise ValueError(f"a display matrix has 9 entries; got shape {values.shape}")
    a, b, c, d = values[0], values[1], values[3], values[4]
    scale = max(abs(a), abs(b), abs(c), abs(d))
    if scale == 0:
        return (False, False, False)
    a, b, c, d = (round(v / scale) for v in (a, b, c, d))
    if a == 0 and d == 0 and b != 0 and c != 0:
        return (True, c < 0, b < 0)
    if b == 0 and c == 0 and a != 0 and d != 0:
        return (False, a < 0, d < 0)
    # NOTE: rotations that are not a multiple of 90 degrees are rounded to the nearest one.
    degrees = -math.degrees(math.atan2(values[1], values[0]))
    quarter = int(round(degrees / 90)) % 4
    logger.warning("display rotation of %.1f degrees rounded to %d", degrees, quarter * 90)
    return _ROTATIONS[quarter]


# Counterclockwise quarter turns 0..3 as (transpose, flip_horizontal, flip_vertical).
_ROTATIONS = {0: (False, False, False), 1: (True, False, True), 2: (False, True, True), 3: (True, True, False)}


def apply_display_transform(image: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    """Apply ``(transpose, flip_horizontal, flip_vertical)`` from :func:`display_transform` to an HxWxC array."""
    transpose, flip_h, flip_v = transform
    if transpose:
        image = image.transpose(1, 0, *range(2, image.ndim))
    if flip_h:
        image = image[:, ::-1]
    if flip_v:
        image = image[::-1]
    return np.ascontiguousarray(image)


def _rotation_degrees(transform: tuple[bool, bool, bool]) -> int:
    # A mirrored transform is reported as the rotation of its unmirrored part after a horizontal flip.
    transpose, flip_h, flip_v = transform
    if _is_mirrored(transform):
        flip_h = not flip_h
    for quarter, rotation in _ROTATIONS.items():
        if rotation == (transpose, flip_h, flip_v):
            return quarter * 90 if quarter < 3 else -90
    return 0


def _is_mirrored(transform: tuple[bool, bool, bool]) -> bool:
    transpose, flip_h, flip_v = transform
    # Each of transpose and a single flip reverses orientation; an odd count is a mirror image.
    return (int(transpose) + int(flip_h) + int(flip_v)) % 2 == 1


def _frame_transform(frame) -> tuple[bool, bool, bool]:
    for side_data in frame.side_data:
        if side_data.type.name == "DISPLAYMATRIX":
            return display_transform(np.frombuffer(bytes(side_data), dtype=np.int32))
    return (False, False, False)


def _to_rgb(frame, transform, stream, *, size: int | None, fit: str) -> np.ndarray:
    """Convert a decoded frame to an upright uint8 RGB array of ``size x size`` (or its own size)."""
    sar = stream.codec_context.sample_aspect_ratio
    pixel_aspect = float(sar) if sar else 1.0
    width = frame.width * pixel_aspect  # in square pixels
    height = float(frame.height)
    if size is None:
        scale = 1.0
    else:
        display_short, display_long = sorted((width, height))
        scale = size / (display_short if fit == "crop" else display_long)
    out_width = max(1, int(round(width * scale)))
    out_height = max(1, int(round(height * scale)))
    rgb = frame.to_ndarray(width=out_width, height=out_height, format="rgb24", interpolation="AREA")
    rgb = apply_display_transform(rgb, transform)
    if size is None:
        return rgb
    return _fit_square(rgb, size, fit)


def _fit_square(image: np.ndarray, size: int, fit: str) -> np.ndarray:
    height, width = image.shape[:2]
    if fit == "crop":
        top = max(0, (height - size) // 2)
        left = max(0, (width - size) // 2)
        image = image[top : top + size, left : left + size]
        height, width = image.shape[:2]
        if height == size and width == size:
            return np.ascontiguousarray(image)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top = (size - height) // 2
    left = (size - width) // 2
    out[top : top + height, left : left + width] = image[:size, :size]
    return out


# --------------------------------------------------------------------------- hand-made descriptor


def descriptor_names(hue_bins: int = 8, saturation_bins: int = 3, value_bins: int = 3) -> list[str]:
    """Return the names of the :func:`describe_frames` features, in vector order."""
    names = [
        f"hsv_h{h}_s{s}_v{v}"
        for h in range(hue_bins)
        for s in range(saturation_bins)
        for v in range(value_bins)
    ]
    names += [
        "brightness_mean",
        "contrast_mean",
        "motion_mean",
        "motion_std",
        "shot_change_fraction",
        "shot_changes_per_second",
    ]
    return names


def describe_frames(
    frames: np.ndarray | FrameSample,
    *,
    timestamps: Sequence[float] | None = None,
    hue_bins: int = 8,
    saturation_bins: int = 3,
    value_bins: int = 3,
    shot_threshold: float = 0.5,
) -> np.ndarray:
    """Compute a hand-made colour and motion descriptor of a video's frames (not a learned embedding).

    This is a fixed set of image statistics that needs no model, for use
    when no pretrained image model can be loaded. It does not describe what
    the frames show, only their colour and how much they change.

    * HSV histogram: ``hue_bins x saturation_bins x value_bins`` joint bins,
      averaged over frames, summing to 1. Hue bins are centred on 0 degrees
      (red), ``360 / hue_bins``, ...; grey pixels have hue 0 and land in the
      lowest saturation bin.
    * ``brightness_mean``: mean BT.601 luma in [0, 1]. ``contrast_mean``: the
      standard deviation of luma within a frame, averaged over frames.
    * ``motion_mean``, ``motion_std``: mean and standard deviation of the
      absolute luma difference between consecutive frames, over all pixels
      and pairs. With the default sampling the frames are seconds apart, so
      this measures change between samples rather than motion; sample densely
      (``per_second``) to measure motion. 0 for a single frame.
    * ``shot_change_fraction``: fraction of consecutive pairs whose histograms
      differ by more than ``shot_threshold`` in total variation distance
      (half the L1 distance, in [0, 1]). ``shot_changes_per_second``: the
      number of such pairs divided by the time between the first and last
      frame (0 without timestamps or with a single frame).

    Args:
        frames (numpy.ndarray or FrameSample): uint8 RGB frames, shape
            ``(n, height, width, 3)``; a FrameSample also supplies timestamps.
        timestamps (sequence of float, optional): Frame times in seconds.
        hue_bins, saturation_bins, value_bins (int): Histogram resolution.
        shot_threshold (float): Histogram distance in (0, 1) that counts as a cut.

    Returns:
        numpy.ndarray: float32 vector named by :func:`descriptor_names`.
    """
    if isinstance(frames, FrameSample):
        timestamps = frames.timestamps if timestamps is None else timestamps
        frames = frames.frames
    frames = _check_frames(frames)
    for name, bins in (("hue_bins", hue_bins), ("saturation_bins", saturation_bins), ("value_bins", value_bins)):
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"{name} must be a positive integer; got {bins!r}")
    if not 0 < shot_threshold < 1:
        raise ValueError(f"shot_threshold must be between 0 and 1; got {shot_threshold!r}")
    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError(f"got {len(timestamps)} timestamps for {len(frames)} frames")

    rgb = frames.astype(np.float64) / 255.0  # (n, H, W, 3)
    histograms = _hsv_histograms(rgb, hue_bins, saturation_bins, value_bins)  # (n, bins)
    luma = rgb @ _LUMA_WEIGHTS  # (n, H, W)

    brightness = luma.mean()
    contrast = luma.reshape(len(luma), -1).std(axis=1).mean()
    if len(frames) > 1:
        differences = np.abs(np.diff(luma, axis=0))
        motion_mean, motion_std = differences.mean(), differences.std()
        distances = 0.5 * np.abs(np.diff(histograms, axis=0)).sum(axis=1)
        cuts = distances > shot_threshold
        cut_fraction = cuts.mean()
        span = float(timestamps[-1] - timestamps[0]) if timestamps is not None else 0.0
        cuts_per_second = cuts.sum() / span if span > 0 else 0.0
    else:
        motion_mean = motion_std = cut_fraction = cuts_per_second = 0.0

    stats = [brightness, contrast, motion_mean, motion_std, cut_fraction, cuts_per_second]
    return np.concatenate([histograms.mean(axis=0), np.asarray(stats, dtype=np.float64)]).astype(np.float32)


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (n, height, width, 3) with n >= 1; got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB (0..255); got dtype {frames.dtype}")
    return frames


def _hsv_histograms(rgb: np.ndarray, hue_bins: int, saturation_bins: int, value_bins: int) -> np.ndarray:
    """Return one normalised joint HSV histogram per frame, shape ``(n, hue * sat * value)``."""
    hsv = rgb_to_hsv(rgb)  # hue, saturation, value in [0, 1]
    hue = np.floor(hsv[..., 0] * hue_bins + 0.5).astype(np.int64) % hue_bins  # bins centred on red
    saturation = np.minimum((hsv[..., 1] * saturation_bins).astype(np.int64), saturation_bins - 1)
    value = np.minimum((hsv[..., 2] * value_bins).astype(np.int64), value_bins - 1)
    joint = (hue * saturation_bins + saturation) * value_bins + value  # (n, H, W)
    n_bins = hue_bins * saturation_bins * value_bins
    n = len(rgb)
    offsets = (np.arange(n) * n_bins)[:, None, None]
    counts = np.bincount((joint + offsets).ravel(), minlength=n * n_bins).reshape(n, n_bins)
    return counts / counts.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- pretrained image encoder


_CLIP_MODEL_TYPES = ("clip", "clip_vision_model")
_SIGLIP_MODEL_TYPES = ("siglip", "siglip_vision_model")
# Models whose [CLS] token is the image summary. ViT and DeiT classification checkpoints are saved
# without the pooler head (add_pooling_layer=False), so AutoModel would initialise it randomly.
_CLS_MODEL_TYPES = ("vit", "deit", "dinov2", "vit_msn")


class VisualEncoder:
    """Encode video frames with a pretrained Hugging Face image model into one vector per video.

    Frame vectors come from the model (see ``pooling``), are averaged over a
    video's frames, and the mean is L2-normalised. The model's own image
    processor resizes and normalises the frames. Without torchvision the
    processor's PIL backend is used.

    Args:
        model_name_or_path (str or path): Hub name (``"openai/clip-vit-base-patch32"``,
            ``"google/vit-base-patch16-224-in21k"``, ``"google/siglip-base-patch16-224"``)
            or a folder written by ``save_pretrained``.
        pooling (str): Frame vector. ``"auto"`` picks ``"image_embeds"`` (the
            projected embedding) for CLIP and ``"cls"`` (the first token of the
            last layer) for ViT, DeiT, DINOv2 and ViT-MSN. Every other model
            gets ``"pooler"``, its own pooled output (SigLIP's attention pool,
            BEiT's mean pool, a CNN's global pool). ``"mean"`` averages the last
            hidden states over tokens (or spatial positions).
        batch_size (int): Frames per forward pass.
        device (str, optional): Torch device; default CUDA when available, else CPU.
        revision (str, optional): Hub revision (branch, tag or commit).
        local_files_only (bool): Never contact the hub.

    Attributes:
        model_ (transformers.PreTrainedModel): The loaded model in eval mode.
        processor_: The image processor.
        pooling_ (str): The pooling in use after resolving ``"auto"``.
        model_type_ (str): ``config.model_type`` of the checkpoint.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        *,
        pooling: str = "auto",
        batch_size: int = 32,
        device: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ):
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}; got {pooling!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.model_name_or_path = str(model_name_or_path)
        self.pooling = pooling
        self.batch_size = batch_size
        self.revision = revision
        self.local_files_only = local_files_only
        _check_local_model_path(self.model_name_or_path)

        import torch
        from transformers import AutoConfig, AutoImageProcessor

        load_kwargs = {"revision": revision, "local_files_only": local_files_only}
        config = AutoConfig.from_pretrained(self.model_name_or_path, **load_kwargs)
        self.model_type_ = config.model_type
        model_class, default_pooling = _model_class(self.model_type_)
        if pooling == "image_embeds" and self.model_type_ not in _CLIP_MODEL_TYPES:
            raise ValueError(
                f"pooling='image_embeds' needs a CLIP model; {self.model_name_or_path!r} is "
                f"{self.model_type_!r}, so use 'auto', 'cls', 'pooler' or 'mean'"
            )
        self.pooling_ = default_pooling if pooling == "auto" else pooling
        self.device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model_kwargs = dict(load_kwargs)
        if self.model_type_ == "clip":
            # A full CLIP checkpoint keeps projection_dim at the top level, and the vision tower must use it.
            vision_config = config.vision_config
            vision_config.projection_dim = config.projection_dim
            model_kwargs["config"] = vision_config
        self.model_ = model_class.from_pretrained(self.model_name_or_path, **model_kwargs).to(self.device_).eval()
        self.processor_ = AutoImageProcessor.from_pretrained(
            self.model_name_or_path, **load_kwargs, **_processor_kwargs()
        )
        self._dim: int | None = None
        logger.info(
            "loaded image model %s (%s, %s pooling) on %s",
            self.model_name_or_path,
            type(self.model_).__name__,
            self.pooling_,
            self.device_,
        )

    @property
    def dim(self) -> int:
        """Length of the vectors, found by encoding one black frame on first use."""
        if self._dim is None:
            self._dim = int(self.encode_frames(np.zeros((1, 32, 32, 3), dtype=np.uint8)).shape[1])
        return self._dim

    def settings(self) -> dict:
        """Return the settings that determine the vectors (for cache keys and results files)."""
        return {
            "model": self.model_name_or_path,
            "revision": self.revision,
            "model_class": type(self.model_).__name__,
            "pooling": self.pooling_,
        }

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Return one unnormalised vector per frame, shape ``(n, dim)``, float32.

        Args:
            frames (numpy.ndarray): uint8 RGB frames, shape ``(n, height, width, 3)``.
        """
        import torch

        frames = _check_frames(frames)
        dtype = next(self.model_.parameters()).dtype
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = list(frames[start : start + self.batch_size])
                inputs = self.processor_(images=batch, return_tensors="pt")
                pixel_values = inputs["pixel_values"].to(self.device_, dtype=dtype)  # (b, 3, h, w)
                outputs = self.model_(pixel_values=pixel_values)
                vectors.append(self._pool(outputs).float().cpu().numpy())  # (b, dim)
        return np.concatenate(vectors).astype(np.float32)

    def encode_video(self, frames: np.ndarray | FrameSample) -> np.ndarray:
        """Return the L2-normalised mean of a video's frame vectors, shape ``(dim,)``."""
        return self.encode_videos([frames])[0]

    def encode_videos(self, videos: Sequence[np.ndarray | FrameSample]) -> np.ndarray:
        """Return one L2-normalised vector per video, shape ``(n_videos, dim)``; frames are batched across videos."""
        arrays = [_check_frames(v.frames if isinstance(v, FrameSample) else v) for v in videos]
        if not arrays:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = [len(a) for a in arrays]
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) == 1:
            frame_vectors = self.encode_frames(np.concatenate(arrays))
        else:
            frame_vectors = np.concatenate([self.encode_frames(a) for a in arrays])
        bounds = np.cumsum([0] + counts)
        means = np.stack([frame_vectors[bounds[i] : bounds[i + 1]].mean(axis=0) for i in range(len(arrays))])
        return l2_normalize(means)

    def _pool(self, outputs):
        if self.pooling_ == "image_embeds":
            return outputs.image_embeds
        if self.pooling_ == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ValueError(
                    f"{type(self.model_).__name__} returns no pooler_output; use pooling='cls' or 'mean'"
                )
            return pooled.flatten(1)  # CNN poolers are (b, c, 1, 1)
        hidden = outputs.last_hidden_state
        if self.pooling_ == "cls":
            if hidden.ndim != 3:
                raise ValueError(
                    f"pooling='cls' needs token outputs (batch, tokens, dim); "
                    f"{type(self.model_).__name__} returns shape {tuple(hidden.shape)}, so use 'pooler' or 'mean'"
                )
            return hidden[:, 0]
        if hidden.ndim == 4:  # (b, c, h, w) feature map
            return hidden.mean(dim=(2, 3))
        return hidden.mean(dim=1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _model_class(model_type: str):
    from transformers import AutoModel, CLIPVisionModelWithProjection, SiglipVisionModel

    if model_type in _CLIP_MODEL_TYPES:
        return CLIPVisionModelWithProjection, "image_embeds"
    if model_type in _SIGLIP_MODEL_TYPES:
        return SiglipVisionModel, "pooler"
    return AutoModel, ("cls" if model_type in _CLS_MODEL_TYPES else "pooler")


def _processor_kwargs() -> dict:
    """Ask for the image processor backend that works without torchvision when it is not installed."""
    if importlib.util.find_spec("torchvision") is not None:
        return {}
    import transformers

    major = int(transformers.__version__.split(".")[0])
    # transformers 5 chooses backends by name; 4.x calls the torchvision-free processor the slow one.
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


def _check_local_model_path(name: str) -> None:
    # Hub names look like relative paths ("org/model"), so only explicit local paths can be checked here.
    if (os.path.isabs(name) or name.startswith((".", "~"))) and not Path(name).expanduser().exists():
        raise FileNotFoundError(
            f"model folder not found: {name}; pass a folder written by save_pretrained or a hub model name"
        )


# --------------------------------------------------------------------------- catalog extraction


@dataclass
class MediaFeatureResult:
    """Feature vectors for a catalog, with the files that failed.

    Attributes:
        matrix (numpy.ndarray): float32, one row per entry of ``item_ids``.
        item_ids (list of str): Row labels.
        names (list of str): Column labels.
        failures (pandas.DataFrame): ``item_id``, ``path``, ``error`` of every
            item that could not be processed, in input order.
        missing (numpy.ndarray): bool per row; True where the row is an
            all-zero placeholder for a failed item (only with ``full_matrix``).
    """

    matrix: np.ndarray
    item_ids: list[str]
    names: list[str]
    failures: pd.DataFrame
    missing: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Return the matrix as a DataFrame indexed by item id."""
        return pd.DataFrame(self.matrix, index=pd.Index(self.item_ids, name=COL_ITEM), columns=self.names)

    @property
    def n_failed(self) -> int:
        return len(self.failures)


@dataclass
class VideoFeatureResult(MediaFeatureResult):
    """Visual features for a catalog; ``info`` has one row per decoded video (see ``INFO_COLUMNS``)."""

    info: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(INFO_COLUMNS)))
    settings: dict = field(default_factory=dict)


def extract_video_features(
    paths: Mapping[str, str | os.PathLike | None] | pd.Series,
    *,
    encoder: VisualEncoder | None = None,
    n_frames: int = 8,
    per_second: float | None = None,
    size: int | None = 224,
    fit: str = "crop",
    full_matrix: bool = False,
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> VideoFeatureResult:
    """Compute one visual vector per item, collecting per-file errors instead of stopping.

    A missing, empty, corrupt or truncated file, a file without a video
    stream and a video without frames each become a row of ``failures``
    (logged as one warning with the item id), and the other items are still
    processed. Other errors (a bug, a model that fails) propagate.

    Args:
        paths (mapping or pandas.Series): Item id to video or cover image path;
            None or an empty string counts as a failure.
        encoder (VisualEncoder, optional): Pretrained image model; default the
            hand-made :func:`describe_frames` descriptor.
        n_frames, per_second, size, fit: Passed to :func:`sample_frames`.
        full_matrix (bool): Return a row for every item in input order, with
            all-zero rows for failed items marked in ``missing``. By default
            only items that succeeded get a row.
        cache (FeatureCache, optional): Store each video's vector under the
            settings and the SHA-256 of the file, and reuse it on later runs.
            Failed files are not stored.
        progress (bool): Show a tqdm progress bar.

    Returns:
        VideoFeatureResult: Matrix, item ids, feature names, failures,
        ``missing`` mask, per-video ``info`` and the ``settings`` used.
    """
    sample_times(1.0, n_frames, per_second=per_second)  # validate before any file is opened
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {list(FIT_MODES)}; got {fit!r}")
    settings = {
        "n_frames": n_frames,
        "per_second": per_second,
        "size": size,
        "fit": fit,
        "encoder": encoder.settings() if encoder is not None else {"describe_frames": DESCRIPTOR_VERSION},
    }

    def compute(path: Path) -> dict[str, np.ndarray]:
        sample = sample_frames(path, n_frames, per_second=per_second, size=size, fit=fit)
        vector = encoder.encode_video(sample) if encoder is not None else describe_frames(sample)
        info = sample.info
        return {
            "vector": vector,
            "duration_s": np.float64(info.duration),
            "fps": np.float64(np.nan if info.fps is None else info.fps),
            "codec": np.str_(info.codec),
            "width": np.int64(info.width),
            "height": np.int64(info.height),
            "rotation": np.int64(info.rotation),
            "frames_decoded": np.int64(sample.frames_decoded),
        }

    def extract(path: Path) -> dict[str, np.ndarray]:
        if cache is None:
            return compute(path)
        _check_media_file(path)
        return cache.get_or_compute_arrays(CACHE_NAMESPACE, settings, hash_file(path), lambda: compute(path))

    item_ids, values, failures = _run_per_file(paths, extract, desc="video features", progress=progress)
    names = descriptor_names() if encoder is None else [f"visual_{i}" for i in range(encoder.dim)]
    info_columns = INFO_COLUMNS[1:]
    info = pd.DataFrame(
        [(item_id, *(arrays[c].item() for c in info_columns)) for item_id, arrays in zip(item_ids, values)],
        columns=list(INFO_COLUMNS),
    )
    vectors = [arrays["vector"] for arrays in values]
    matrix, row_ids, missing = _assemble(paths, item_ids, vectors, len(names), full_matrix)
    return VideoFeatureResult(
        matrix=matrix,
        item_ids=row_ids,
        names=names,
        failures=failures,
        missing=missing,
        info=info,
        settings=settings,
    )


def _normalise_paths(paths) -> dict[str, object]:
    if isinstance(paths, pd.Series):
        pairs = list(paths.items())
    elif isinstance(paths, Mapping):
        pairs = list(paths.items())
    else:
        raise TypeError(f"paths must be a mapping or pandas Series of item id to path; got {type(paths).__name__}")
    out: dict[str, object] = {}
    for key, value in pairs:
        item_id = str(key)
        if item_id in out:
            raise DataError(f"item_id {item_id!r} appears more than once in paths; item ids must be unique")
        out[item_id] = value
    return out


def _is_blank_path(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, os.PathLike):
        return False
    return value is None or bool(pd.isna(value))  # NaN, pd.NA and NaT from a table column


def _run_per_file(
    paths, extract: Callable[[Path], object], *, desc: str, progress: bool, log: logging.Logger = logger
) -> tuple[list[str], list, pd.DataFrame]:
    """Apply ``extract`` to every path; return the ids and results that succeeded and a failure table.

    Only :class:`MediaError` counts as a per-file failure, logged to ``log``; any other exception propagates.
    """
    paths = _normalise_paths(paths)
    item_ids, values, failures = [], [], []
    for item_id, path in tqdm(paths.items(), desc=desc, total=len(paths), disable=not progress):
        try:
            if _is_blank_path(path):
                raise MediaError("no path given for this item")
            values.append(extract(Path(path)))
        except MediaError as exc:
            log.warning("%s: item %s failed: %s", desc, item_id, exc)
            failures.append((item_id, None if _is_blank_path(path) else str(path), str(exc)))
            continue
        item_ids.append(item_id)
    return item_ids, values, pd.DataFrame(failures, columns=list(FAILURE_COLUMNS))


def _assemble(paths, item_ids, vectors, dim: int, full_matrix: bool):
    """Stack vectors into the result matrix: successes only, or every input item with zero rows for failures."""
    dense = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
    if not full_matrix:
        return dense, list(item_ids), np.zeros(len(item_ids), dtype=bool)
    all_ids = list(_normalise_paths(paths))
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    matrix = np.zeros((len(all_ids), dim), dtype=np.float32)
    missing = np.ones(len(all_ids), dtype=bool)
    for row, item_id in enumerate(all_ids):
        if item_id in position:
            matrix[row] = dense[position[item_id]]
            missing[row] = False
    return matrix, all_ids, missing


# --------------------------------------------------------------------------- plotting


def plot_frame_strip(sample: FrameSample | np.ndarray, ax=None, *, gap: int = 4):
    """Draw the frames side by side, labelled with their timestamps, and return the Axes.

    Args:
        sample (FrameSample or numpy.ndarray): Frames to show; an array has no time labels.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new page-wide figure.
        gap (int): White pixels between frames.
    """
    from vidrec_lab.viz import PAGE_WIDTH_IN, new_axes

    timestamps = sample.timestamps if isinstance(sample, FrameSample) else None
    frames = _check_frames(sample.frames if isinstance(sample, FrameSample) else sample)
    n, height, width = frames.shape[:3]
    if ax is None:
        _, ax = new_axes(width=PAGE_WIDTH_IN, aspect=height / max(n * (width + gap), 1) + 0.08)
    strip = np.full((height, n * width + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        left = i * (width + gap)
        strip[:, left : left + width] = frame
    ax.imshow(strip)
    ax.grid(False)
    ax.set_yticks([])
    centres = [i * (width + gap) + width / 2 for i in range(n)]
    ax.set_xticks(centres)
    if timestamps is not None:
        ax.set_xticklabels([f"{t:.1f} s" for t in timestamps])
    else:
        ax.set_xticklabels([str(i) for i in range(n)])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return ax
