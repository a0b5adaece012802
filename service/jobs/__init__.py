"""Jobs: submission, state changes, read models (service.py), their routes and outputs, artifacts."""
