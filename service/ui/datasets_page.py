"""/ui/datasets: the data sets the service made, their size, codec and last use."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from jobkinds.disk import gib
from service.datasets.service import list_datasets
from service.deps import SessionDep, SettingsDep
from service.ui.pages import render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "datasets.html", listing=list_datasets(session, settings), gib=gib)
