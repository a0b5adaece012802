"""Users who own their jobs, over real uvicorn + PostgreSQL + Redis: without users the service
behaves as before; once users exist every read needs a token, a user sees and changes only
their own jobs (others' are 404, as if they did not exist), admins and the shared key see all,
quotas refuse with their name, and every mutating request lands in the audit log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from state.settings import Settings
from state.store import migrate, session_scope
from state.store.users import add_user
from tests.service.stack import (
    API_KEY,
    REPO,
    ThreadedServer,
    postgres_schema,
    redis_url,
    tiny_spec,
    unique_queue,
)
from tests.service.test_api import forget_queue


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with postgres_schema() as url:
        yield Settings(
            data_dir=tmp_path_factory.mktemp("users"),
            database_url=url,
            broker_url=redis_url(),
            train_queue=unique_queue(),
            api_key=API_KEY,
            users_cache_seconds=0,
        )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings)) as running:
        yield running
    forget_queue(settings)


def client(
    server: ThreadedServer, token: str | None = None, key: str | None = None
) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key:
        headers["X-API-Key"] = key
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=60)


def test_without_users_reads_are_open_and_the_key_guards_writes(server: ThreadedServer) -> None:
    anonymous = client(server)
    assert anonymous.get("/jobs").status_code == 200
    assert anonymous.post("/jobs", json=tiny_spec()).status_code == 401
    assert client(server, key=API_KEY).post("/jobs", json=tiny_spec()).status_code == 201
    assert anonymous.get("/users/me").json() == {"name": None, "scopes": ["read"], "how": "open"}


def test_users_own_their_jobs(server: ThreadedServer, settings: Settings) -> None:
    url = settings.resolved_database_url
    with session_scope(url) as session:
        alice = add_user(session, "alice", ["submit"])
        bob = add_user(session, "bob", ["submit"], max_active_jobs=1)
        reader = add_user(session, "rita", ["read"])
        admin = add_user(session, "ada", ["admin"])
    anonymous, as_alice, as_bob = client(server), client(server, alice), client(server, bob)
    assert anonymous.get("/jobs").status_code == 401 and "Bearer" in anonymous.get("/jobs").text
    assert client(server, "apt_forged").get("/jobs").status_code == 401
    assert anonymous.get("/health").status_code in (200, 503)  # health stays open

    mine = as_alice.post("/jobs", json=tiny_spec())
    assert mine.status_code == 201 and mine.json()["owner"] == "alice"
    job_id = mine.json()["id"]
    assert [j["id"] for j in as_alice.get("/jobs").json()["items"]] == [job_id]
    # bob sees nothing of alice's: not in his list, and 404 exactly like an unknown id
    assert as_bob.get("/jobs").json()["total"] == 0
    unknown = as_bob.get(f"/jobs/{'0' * 32}")
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/artifacts", f"/jobs/{job_id}/loss.png"):
        theirs = as_bob.get(path)
        assert theirs.status_code == 404 and unknown.status_code == 404, path
    assert as_bob.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert as_bob.delete(f"/jobs/{job_id}").status_code == 404
    assert as_bob.get(f"/ui/jobs/{job_id}").status_code == 404
    # reading needs read, submitting needs submit; the admin and the shared key see everything
    assert client(server, reader).post("/jobs", json=tiny_spec()).status_code == 403
    assert client(server, reader).get("/jobs").json()["total"] == 0
    assert client(server, admin).get(f"/jobs/{job_id}").json()["owner"] == "alice"
    assert client(server, key=API_KEY).get(f"/jobs/{job_id}").status_code == 200
    assert as_alice.post(f"/jobs/{job_id}/cancel").status_code == 202

    # quotas: bob may have one active job
    assert as_bob.post("/jobs", json=tiny_spec()).status_code == 201
    refused = as_bob.post("/jobs", json=tiny_spec())
    assert refused.status_code == 429 and "quota is 1" in refused.text

    # the audit log: who did what, readable by admins only
    assert as_alice.get("/audit").status_code == 403
    log = client(server, admin).get("/audit", params={"user": "alice"}).json()
    actions = {(e["method"], e["path"].split("/")[-1], e["status"]) for e in log["items"]}
    assert ("POST", "jobs", 201) in actions and ("POST", "cancel", 202) in actions
    bob_log = client(server, admin).get("/audit", params={"user": "bob"}).json()["items"]
    assert any(e["status"] == 404 and e["target"] == job_id for e in bob_log)  # his try at her job
    assert any(e["status"] == 429 for e in bob_log)


def test_the_dashboard_sends_a_browser_without_a_token_to_sign_in(
    server: ThreadedServer, settings: Settings
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        token = add_user(session, "carl", ["submit"])
    page = client(server).get("/ui/jobs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2Fjobs"
    assert "Sign in" in client(server).get("/ui/login").text
    signed_in = httpx.get(f"{server.base_url}/ui/jobs", cookies={"astropt_token": token})
    assert signed_in.status_code == 200
    # the cookie is for reads only: a write needs the header
    assert (
        httpx.post(
            f"{server.base_url}/jobs", json=tiny_spec(), cookies={"astropt_token": token}
        ).status_code
        == 401
    )


@pytest.mark.slow
def test_the_users_command_adds_lists_and_revokes(tmp_path: Path) -> None:
    env = {"ASTROPT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "astropt.cli", "users"]
    added = subprocess.run(
        [*run, "add", "dora", "--scope", "admin", "--max-active-jobs", "3"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("apt_") and len(token) > 40
    listed = subprocess.run(
        [*run, "list"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert (
        "dora" in listed.stdout
        and "read,submit,admin" in listed.stdout
        and "jobs=3" in listed.stdout
    )
    assert token not in listed.stdout
    again = subprocess.run(
        [*run, "add", "dora"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 2 and "exists" in again.stderr
    revoked = subprocess.run(
        [*run, "revoke", "dora"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert revoked.returncode == 0
    url = f"sqlite:///{tmp_path / 'astropt.db'}"
    migrate(url)
    from state.store.users import user_for_token

    with session_scope(url) as session:
        assert user_for_token(session, token) is None  # revoked: the token no longer opens anything


def test_the_python_client_takes_the_token_from_the_environment(
    server: ThreadedServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astropt.client import Client

    with session_scope(settings.resolved_database_url) as session:
        token = add_user(session, "erin", ["submit"])
    monkeypatch.setenv("ASTROPT_URL", server.base_url)
    monkeypatch.setenv("ASTROPT_TOKEN", token)
    monkeypatch.delenv("ASTROPT_API_KEY", raising=False)
    with Client() as erin:
        submitted = erin.submit(tiny_spec())
        assert submitted["owner"] == "erin"
        assert [job["id"] for job in erin.http.get("/jobs").json()["items"]] == [submitted["id"]]
