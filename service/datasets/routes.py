"""Data set endpoints: list what the service made, delete one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from service.datasets import service
from service.datasets.schemas import DatasetList
from service.deps import ApiKey, SessionDep, SettingsDep
from service.http.responses import STORE_DOWN
from service.http.schemas import ErrorOut

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=STORE_DOWN)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong API key"},
    404: {"model": ErrorOut, "description": "Not a data set this service made"},
    409: {
        "model": ErrorOut,
        "description": "Still being written, or read by a queued or running job",
    },
}


@router.get(
    "", response_model=DatasetList, summary="Token data sets, token caches and mock sets on disk"
)
def list_datasets(session: SessionDep, settings: SettingsDep) -> DatasetList:
    """Everything the service wrote under its data directory besides run directories, with size,
    source, codec and last use, and the disk budget (`ASTROPT_DISK_BUDGET_GB`)."""
    return service.list_datasets(session, settings)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[ApiKey],
    responses=ERRORS,
    summary="Delete a data set the service made",
)
def delete_dataset(dataset_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    """Only what the service created: a tokenise job's `tokens/` (the job's record and run stay),
    a token cache or a mock set. A user's own directories are never listed and never deleted."""
    service.delete_dataset(session, settings, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
