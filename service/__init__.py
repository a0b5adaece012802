"""HTTP service for AstroPT training jobs: FastAPI app, settings, store, routes."""
