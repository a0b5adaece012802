"""What the service and the worker share: settings, the job store and its migrations.

Both ``service/`` and ``worker/`` import this package; it imports neither of them.
"""
