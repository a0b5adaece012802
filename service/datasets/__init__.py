"""Data sets the service made: token data sets of tokenise jobs, token caches, mock sets.

Listed with their size, source, codec and last use (``GET /datasets``); each can be deleted
(``DELETE /datasets/{id}``), never anything the service did not create.
"""
