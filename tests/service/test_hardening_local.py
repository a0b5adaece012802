"""Issue 25 without a service: device locks per data directory (item 10) and the process-wide
inflate budget of gzip uploads (item 1); tests/service/test_hardening.py has the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from state.settings import Settings

# 10. Device locks ---------------------------------------------------------------------------------


def test_services_with_different_data_directories_do_not_share_device_locks(tmp_path: Path) -> None:
    from worker.launch.placement import device_pool

    first = Settings(data_dir=tmp_path / "one", worker_devices=1)
    second = Settings(data_dir=tmp_path / "two", worker_devices=1)
    same_as_first = Settings(data_dir=tmp_path / "one", worker_devices=1)
    lease = device_pool(first).acquire(1)
    assert lease is not None
    try:
        assert device_pool(first).lock_dir.is_relative_to((tmp_path / "one").resolve())
        other = device_pool(second).acquire(1)
        assert other is not None, "a service with another data directory could not lease its device"
        other.release()
        assert device_pool(same_as_first).acquire(1) is None  # one service: still exclusive
    finally:
        lease.release()


# 1. The inflate budget ---------------------------------------------------------------------------


def test_the_inflate_budget_bounds_concurrent_uploads_and_answers_503_when_spent() -> None:
    import gzip

    from astropt.inference.inflate import InflateBudget, inflated
    from astropt.inference.limits import InputError
    from service.inference.errors import http_status

    payload = gzip.compress(bytes(3000))
    budget = InflateBudget(capacity=4000)
    with inflated(payload, 10_000, budget, wait_s=1.0) as plain:  # one upload larger than half
        assert plain == bytes(3000) and budget.reserved == 3000
        with pytest.raises(InputError) as refused, inflated(payload, 10_000, budget, wait_s=0.2):
            pass  # a second one would pass the budget
        assert (
            http_status(refused.value) == 503
            and "ASTROPT_INFERENCE_MAX_INFLATING_MB" in refused.value.message
        )
    assert budget.reserved == 0
    with inflated(
        gzip.compress(bytes(9000)), 10_000, budget, wait_s=0.2
    ) as alone:  # over the budget, alone
        assert len(alone) == 9000
    with (
        pytest.raises(InputError) as bomb,
        inflated(gzip.compress(bytes(20_000)), 10_000, budget, wait_s=0.2),
    ):
        pass
    assert http_status(bomb.value) == 413 and budget.reserved == 0
