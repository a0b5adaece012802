"""What a task raises to be delivered again later (the job stays queued)."""


class RetryLater(Exception):
    """The job is running elsewhere with a fresh heartbeat, or its devices are busy: look again later."""
