"""Celery worker: training jobs (train queue)."""
