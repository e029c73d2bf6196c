"""Item and user features: text, video, audio and behaviour, with an on-disk cache.

Names are imported from their submodules on first use, so
``import vidrec_lab.features`` loads neither PyTorch nor ``transformers``.

* :mod:`vidrec_lab.features.text`: cleaning, composed item texts, ``TextEncoder``.
* :mod:`vidrec_lab.features.behavior`: weighted interaction matrices,
  sequences, user profiles, SVD item vectors.
* :mod:`vidrec_lab.features.video`: frame sampling with PyAV, a colour and
  motion descriptor, ``VisualEncoder`` for Hugging Face image models.
* :mod:`vidrec_lab.features.audio`: audio decoding, log-mel and MFCC statistics.
* :mod:`vidrec_lab.features.cache`: ``FeatureCache`` for matrices keyed by item
  and arrays keyed by file content.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule that defines it.
_EXPORTS = {
    "TextCleaningConfig": "text",
    "clean_text": "text",
    "split_hashtags": "text",
    "movielens_title": "text",
    "compose_item_text": "text",
    "DEFAULT_TEMPLATE": "text",
    "TextEncoder": "text",
    "ModelNotFoundError": "text",
    "encode_items": "text",
    "FeatureCache": "cache",
    "fingerprint": "cache",
    "hash_text": "cache",
    "hash_file": "cache",
    "interaction_matrix": "behavior",
    "user_sequences": "behavior",
    "user_profiles": "behavior",
    "item_vectors_from_interactions": "behavior",
    "DEFAULT_EVENT_WEIGHTS": "behavior",
    "sample_frames": "video",
    "describe_frames": "video",
    "VisualEncoder": "video",
    "extract_video_features": "video",
    "audio_features": "audio",
    "extract_audio_features": "audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
