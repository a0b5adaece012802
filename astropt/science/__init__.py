"""Downstream science with a trained model: embedding catalogues, linear probes, similarity search.

Job-level entry points (what a Celery task calls):

- :func:`load_embed_model` + :func:`embed_catalogue` -> :class:`EmbedResult`
- :func:`probe_catalogue` -> :class:`ProbeReport` (``to_dict``/``to_json``)
- :class:`SimilarityIndex` (``query_id``, ``query_vector``, ``outlier_scores``), :func:`catalogue_map`
"""

from astropt.science.catalogue import Catalogue, CatalogueError, read_catalogue, write_catalogue
from astropt.science.embed import embed_catalogue, embed_catalogues
from astropt.science.embedding import (
    EmbedModel,
    EmbedOptions,
    EmbedResult,
    embed_flux,
    embed_tokens,
    load_embed_model,
)
from astropt.science.probe import FeatureScores, LabelScore, ProbeReport, probe_catalogue, ridge_cv
from astropt.science.search import Hit, SimilarityIndex, catalogue_map, pca_map
from astropt.science.sources import SourceSpec, open_source

__all__ = [
    "Catalogue",
    "CatalogueError",
    "EmbedModel",
    "EmbedOptions",
    "EmbedResult",
    "FeatureScores",
    "Hit",
    "LabelScore",
    "ProbeReport",
    "SimilarityIndex",
    "SourceSpec",
    "catalogue_map",
    "embed_catalogue",
    "embed_catalogues",
    "embed_flux",
    "embed_tokens",
    "load_embed_model",
    "open_source",
    "pca_map",
    "probe_catalogue",
    "read_catalogue",
    "ridge_cv",
    "write_catalogue",
]
