"""docker-compose.yml and Dockerfile: what a deployment relies on."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.service.stack import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_have_health_checks_and_wait_for_each_other(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "api", "worker"}
    assert all("healthcheck" in service for service in services.values())
    assert services["api"]["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_worker_reserves_one_gpu_and_shares_artifacts_with_the_api(compose: dict) -> None:
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert "artifacts:/data" in api["volumes"] and "artifacts:/data" in worker["volumes"]
    assert "artifacts" in compose["volumes"]
    for service in (api, worker):
        env = service["environment"]
        assert env["ASTROPT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["ASTROPT_BROKER_URL"] == "redis://redis:6379/0"
        assert env["ASTROPT_DATA_DIR"] == "/data"
    assert worker["command"][:2] == ["astropt", "worker"] and api["command"][:2] == [
        "astropt",
        "api",
    ]


def test_dockerfile_installs_the_service_extra() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'pip install ".[service]"' in text and "ASTROPT_DATA_DIR=/data" in text


def test_compose_file_validates() -> None:
    # Runs or fails loudly: a CI machine without compose must not pass this silently.
    tried = []
    for command in (["docker", "compose", "config", "-q"], ["docker-compose", "config", "-q"]):
        if shutil.which(command[0]) is None:
            tried.append(f"{command[0]}: not installed")
            continue
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        plugin_missing = "unknown" in result.stderr or "not a docker command" in result.stderr
        if command[0] == "docker" and plugin_missing:
            tried.append("docker: no compose plugin")
            continue  # try the standalone binary
        assert result.returncode == 0, result.stderr
        return
    pytest.fail(
        "cannot validate docker-compose.yml: install `docker compose` or `docker-compose` "
        f"(apt-get install docker-compose); tried {tried}"
    )
