"""``Client``: the service's HTTP API as Python methods (httpx underneath)."""

from __future__ import annotations

import builtins
import io
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import httpx
    import pandas

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = frozenset({"completed", "failed", "cancelled"})
Mode = Literal["codec", "predict", "complete"]


class ClientError(RuntimeError):
    """The service refused a request (``status`` is the HTTP status; 0: not reachable)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status, self.detail = status, detail


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # 422: [{field, msg}, ...]
        return "; ".join(
            f"{d.get('field') or '.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
    return str(detail)


def load_spec(spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A job spec from a dict or a YAML/JSON file (the ``astropt train --config`` format)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a mapping of training settings")
    return data


class Client:
    """Talks to one service. ``url``, ``api_key`` and ``token`` default to ``$ASTROPT_URL``,
    ``$ASTROPT_API_KEY`` and ``$ASTROPT_TOKEN``: the shared key goes as ``X-API-Key``, a user's
    token (a service with users, docs/operations.md) as ``Authorization: Bearer``; whichever is
    set is sent on every request."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ):
        import httpx

        self.url = (url or os.environ.get("ASTROPT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("ASTROPT_API_KEY", "")
        bearer = token if token is not None else os.environ.get("ASTROPT_TOKEN", "")
        headers = {"X-API-Key": key} if key else {}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                if method not in ("GET", "HEAD"):
                    raise
                # a kept-alive connection the server closed as we sent: a read is safe to repeat
                response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(
                0, f"cannot reach the service at {self.url}: {exc} (set ASTROPT_URL or --url)"
            ) from exc
        if response.status_code >= 400:
            raise ClientError(response.status_code, _detail(response))
        return response

    # --- jobs -----------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
        """Queue a training job; ``spec`` is a dict or a YAML/JSON config file."""
        return self._request("POST", "/jobs", json=load_spec(spec)).json()

    def list(
        self, phase: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if phase:
            params["phase"] = phase
        return self._request("GET", "/jobs", params=params).json()["items"]

    def get(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/cancel").json()

    def resume(self, job_id: str, max_iters: int | None = None) -> dict[str, Any]:
        body = {"max_iters": max_iters} if max_iters else None
        return self._request("POST", f"/jobs/{job_id}/resume", json=body).json()

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's Server-Sent Events as ``(event, data)``, until the ``end`` event."""
        import httpx

        with self.http.stream(
            "GET",
            f"/jobs/{job_id}/events",
            timeout=httpx.Timeout(self.http.timeout.connect, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise ClientError(response.status_code, _detail(response))
            event = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1])
                    yield event, data
                    if event == "end":
                        return

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is completed, failed or cancelled; returns the job.
        Follows the event stream (reconnecting if it drops); ``timeout`` in seconds."""
        import httpx

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["phase"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['phase']} after {timeout} s")
            try:
                for event, _ in self.events(job_id):
                    if event == "end" or (deadline is not None and time.monotonic() > deadline):
                        break
            except httpx.TransportError:
                time.sleep(1.0)  # the server restarted: look again

    def curves(self, job_id: str) -> pandas.DataFrame:
        """train_loss, val_loss and lr by step (NaN where a curve has no point)."""
        import pandas as pd

        curves = self.get(job_id)["curves"]
        frames = [
            pd.Series(curves[name]["values"], index=curves[name]["steps"], name=name, dtype=float)
            for name in ("train_loss", "val_loss", "lr")
        ]
        frame = pd.concat(frames, axis=1).sort_index()
        frame.index.name = "step"
        return frame.reset_index()

    def loss_png(self, job_id: str) -> bytes:
        return self._request("GET", f"/jobs/{job_id}/loss.png").content

    def compare_png(self, job_ids: builtins.list[str]) -> bytes:  # list: the method above
        """Validation curves of several jobs overlaid (``GET /jobs/compare.png``)."""
        return self._request("GET", "/jobs/compare.png", params={"ids": ",".join(job_ids)}).content

    # --- inference --------------------------------------------------------------------
    def reconstruct(
        self,
        image: str | Path | np.ndarray,
        job_id: str | None = None,
        checkpoint: str | None = None,
        mode: Mode = "predict",
        bands: str | None = None,
        **options: Any,
    ) -> np.ndarray:
        """The reconstruction as ``float32[4, 96, 96]`` (DES g, r, i, z; nanomaggies)."""
        response = self._reconstruct(image, "npy", job_id, checkpoint, mode, bands, options)
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def reconstruct_png(
        self,
        image: str | Path | np.ndarray,
        job_id: str | None = None,
        checkpoint: str | None = None,
        mode: Mode = "predict",
        bands: str | None = None,
        **options: Any,
    ) -> tuple[bytes, dict[str, str]]:
        """The PNG panel and the metrics (``X-Token-Accuracy``, ``X-MSE``, ... headers)."""
        response = self._reconstruct(image, "png", job_id, checkpoint, mode, bands, options)
        return response.content, {
            k: v for k, v in response.headers.items() if k.lower().startswith("x-")
        }

    def predict(
        self,
        image: str | Path | np.ndarray,
        job_id: str | None = None,
        checkpoint: str | None = None,
        labels: builtins.list[str] | None = None,
        bands: str | None = None,
    ) -> dict[str, Any]:
        """A fine-tune job's label predictions (``predictions``, ``probabilities``, ...)."""
        fields = {
            "job_id": job_id,
            "checkpoint": checkpoint,
            "bands": bands,
            "labels": ",".join(labels) if labels else None,
        }
        return self._upload("/predict", image, fields).json()

    def _reconstruct(
        self,
        image: str | Path | np.ndarray,
        fmt: str,
        job_id: str | None,
        checkpoint: str | None,
        mode: Mode,
        bands: str | None,
        options: dict[str, Any],
    ) -> httpx.Response:
        fields = {
            "job_id": job_id,
            "checkpoint": checkpoint,
            "mode": mode,
            "bands": bands,
            "format": fmt,
            **options,
        }
        return self._upload("/reconstruct", image, fields)

    def _upload(
        self, route: str, image: str | Path | np.ndarray, fields: dict[str, Any]
    ) -> httpx.Response:
        if isinstance(image, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(image, dtype=np.float32), allow_pickle=False)
            name, content = "image.npy", buffer.getvalue()
        else:
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"no such image file: {path}")
            name, content = path.name, path.read_bytes()
        data = {k: str(v) for k, v in fields.items() if v is not None}
        return self._request("POST", route, files={"file": (name, content)}, data=data)
