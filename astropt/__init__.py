"""AstroPT on AION tokens: model, tokenisation, data, training and inference."""

__version__ = "0.1.0"
