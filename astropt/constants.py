"""AION image-token constants: defined once, imported by config, codec, tokenisation and inference.

This module imports nothing, so every other module may import it.
"""

TOKENS_PER_IMAGE = 576  # a 96x96 crop, two 2x compressions: a 24x24 token grid
TOKEN_GRID = 24
AION_VOCAB_SIZE = 10_000  # finite scalar quantisation levels 8*5*5*5*5
DEFAULT_BANDS = ("DES-G", "DES-R", "DES-I", "DES-Z")
CROP = 96  # the codec's centre crop, in pixels
