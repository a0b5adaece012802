"""Serving engine for reconstructions and embeddings (see ``docs/inference.md``)."""
