"""Users who own their jobs: tokens, scopes, quotas and the audit log (docs/operations.md, "Users").

With no user configured the service behaves as it always has (the laptop default): reads are
open and the single API key, when set, guards what changes state. Once a user exists, every
request names a token (``Authorization: Bearer <token>``; the API key still works, as an admin),
reads need one too unless ``ASTROPT_PUBLIC_READS`` is on, and a user sees only their own jobs
and catalogues (others' answer 404, so existence does not leak).
"""
