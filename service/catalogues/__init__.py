"""Catalogues of embed jobs: what the endpoints compute (service.py), galaxies, maps, routes."""
