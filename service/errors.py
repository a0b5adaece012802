"""The service's error kinds live in :mod:`state.errors` (shared with the job rules in ``jobkinds``)."""

from state.errors import *  # noqa: F403  (kept while in-flight branches still import this path)
