"""/ui/datasets: the data sets the service made, their size, codec and last use."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from service.datasets.service import list_datasets
from service.deps import SessionDep, SettingsDep
from service.ui.pages import render

router = APIRouter(prefix="/ui", include_in_schema=False)


def size(n: int) -> str:
    """Bytes as a person reads them: 72.0 kB, 4.4 MB, 1.25 GiB."""
    for unit, scale in (("GiB", 2**30), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GiB" else f"{n / scale:.1f} {unit}"
    return f"{n} B"


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "datasets.html", listing=list_datasets(session, settings), gib=size)
