"""The AION image codec as every user meets it: resolve a spec, load it, encode and decode.

Training a codec (objective, trainer, growth, evaluation) lives apart, in
``astropt.codec_training``; this package is what training, inference and the service use.
"""

from astropt.codec.loading import (
    AION_RANGE_COMPRESSION,
    CONFIG_NAME,
    HUB_DEFAULT,
    SHIPPED_DIR,
    WEIGHTS_NAME,
    CodecError,
    CodecHandle,
    CodecInfo,
    build_codec,
    check_flux_shape,
    check_same_codec,
    codec_config,
    evict_codec,
    fingerprint,
    load_codec,
    random_codec,
    resolve,
    save_codec,
)

__all__ = [
    "AION_RANGE_COMPRESSION", "CONFIG_NAME", "HUB_DEFAULT", "SHIPPED_DIR", "WEIGHTS_NAME",
    "CodecError", "CodecHandle", "CodecInfo", "build_codec", "check_flux_shape",
    "check_same_codec", "codec_config", "evict_codec", "fingerprint", "load_codec",
    "random_codec", "resolve", "save_codec",
]
