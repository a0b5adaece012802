"""A Python client for the AstroPT service (``astropt api`` / ``astropt serve``).

>>> from astropt.client import Client
>>> client = Client()                       # ASTROPT_URL, ASTROPT_API_KEY from the environment
>>> job = client.submit("astropt/configs/mock-small.yaml")
>>> client.wait(job["id"])["phase"]
'completed'
>>> client.curves(job["id"]).tail()         # pandas DataFrame: step, train_loss, val_loss, lr
>>> cube = client.reconstruct("galaxy.fits", job_id=job["id"])   # float32[4, 96, 96]

Needs ``httpx`` (and ``pandas`` for :meth:`Client.curves`): ``pip install 'astropt-service[client]'``.
"""

from astropt.client.api import DEFAULT_URL, Client, ClientError

__all__ = ["DEFAULT_URL", "Client", "ClientError"]
