"""A job message that arrives while the store cannot answer is retried, never dropped.

The claim happens after the broker handed the message over; if it raised, the task failed,
the message was gone, and the job (already published) stayed ``queued`` for ever. Seen on a
loaded machine as SQLite's "database is locked"; here a PostgreSQL row lock held by another
connection makes the claim hit its statement timeout, deterministically.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from state.settings import Settings, get_settings
from state.store import migrate, repository, session_scope
from tests.service.stack import postgres_schema, tiny_spec


def test_a_claim_the_store_cannot_answer_is_retried_and_the_job_left_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.retry import RetryLater
    from worker.tasks import run_training_job

    monkeypatch.setenv(
        "ASTROPT_DATABASE_TIMEOUT_SECONDS", "1"
    )  # the statement timeout of new engines
    get_settings.cache_clear()
    try:
        with postgres_schema() as database:
            migrate(database)
            settings = Settings(
                data_dir=tmp_path, database_url=database, database_timeout_seconds=1
            )
            job_id = "claimretry000000000000000000000"
            with session_scope(database) as session:
                repository.create_job(
                    session, job_id, tiny_spec(max_iters=2), str(tmp_path / "run")
                )
            holder = create_engine(database)
            try:
                with holder.connect() as lock:  # another transaction holds the job's row
                    lock.execute(
                        text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id}
                    )
                    with pytest.raises(RetryLater, match="could not claim job"):
                        run_training_job(settings, job_id)
                    lock.rollback()
            finally:
                holder.dispose()
            with session_scope(database) as session:
                job = repository.get_job(session, job_id)
                assert (job.phase, job.attempts, job.owner) == ("queued", 0, None)
    finally:
        get_settings.cache_clear()
