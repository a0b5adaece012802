"""AION image codec: resolving a codec spec, loading it, encoding and decoding.

A codec *spec* is one string:

- ``"default"``: aion-base from the Hugging Face hub when it can be had (cached or
  reachable), otherwise the codec shipped inside this package;
- ``"shipped"``: the small AION-architecture codec trained on mock galaxies that
  ships with the package (see ``docs/codec.md``);
- a hub id such as ``"polymathic-ai/aion-base"`` (``hub:`` prefix optional);
- a local directory in AION's layout (``codecs/image/config.json`` +
  ``codecs/image/model.safetensors``);
- ``"random:SEED"``: an *untrained*, randomly initialised small codec, for tests.

Every loaded codec carries a :class:`CodecInfo` (resolved spec + a fingerprint of
its weights) which travels with token batches, checkpoints and jobs so that tokens
of two codecs are never mixed.

Modules: ``spec`` (what a spec string names), ``layout`` (AION's on-disk layout, build/save/
load, fingerprint), ``handle`` (encode/decode), ``info`` (identity, never mixing codecs),
``cache`` (``load_codec``). Training a codec (objective, trainer, growth, evaluation) lives
apart, in ``astropt.codec_training``.
"""

from astropt.codec.cache import evict_codec, load_codec
from astropt.codec.handle import CodecHandle, check_flux_shape
from astropt.codec.info import CodecError, CodecInfo, CodecSource, check_same_codec
from astropt.codec.layout import (
    AION_RANGE_COMPRESSION,
    CONFIG_NAME,
    SHIPPED_DIR,
    WEIGHTS_NAME,
    build_codec,
    codec_config,
    fingerprint,
    random_codec,
    save_codec,
)
from astropt.codec.spec import HUB_DEFAULT, ResolvedSpec, resolve

__all__ = [
    "AION_RANGE_COMPRESSION",
    "CONFIG_NAME",
    "HUB_DEFAULT",
    "SHIPPED_DIR",
    "WEIGHTS_NAME",
    "CodecError",
    "CodecHandle",
    "CodecInfo",
    "CodecSource",
    "ResolvedSpec",
    "build_codec",
    "check_flux_shape",
    "check_same_codec",
    "codec_config",
    "evict_codec",
    "fingerprint",
    "load_codec",
    "random_codec",
    "resolve",
    "save_codec",
]
