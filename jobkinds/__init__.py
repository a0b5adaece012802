"""The job contract that the service and the worker share.

- :mod:`jobkinds.spec`: the body of ``POST /jobs`` (:class:`JobSpec`), as stored and as the
  worker reads it back;
- :mod:`jobkinds.registry`: each kind's rules (checks, capacity, preparation, resume, and the
  conversion to the library's config), one module per kind in ``jobkinds/kinds/``;
- the shared rules: :mod:`jobkinds.checks` (bounds and data roots), :mod:`jobkinds.capacity`
  (can a worker run it), :mod:`jobkinds.checkpoints` (the checkpoint a job starts from).

It imports ``astropt`` and ``state``, never ``service`` or ``worker``.
"""
