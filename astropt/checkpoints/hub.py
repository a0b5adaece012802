"""Upstream checkpoints from the Hugging Face hub (e.g. ``Smith42/astroPT_v2.0``).

``huggingface_hub`` does the work, so its cache (``HF_HUB_CACHE``/``HF_HOME``), ``HF_TOKEN`` and
offline mode (``HF_HUB_OFFLINE=1``) behave as everywhere else; a short ETag timeout keeps an
unreachable hub from hanging a command, and a file neither cached nor downloadable is a clear
:class:`CheckpointError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from astropt.checkpoints.io import CheckpointError

ETAG_TIMEOUT_S = 10.0


def download_upstream(
    repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Local path of ``filename`` (a path inside the repo, e.g. ``astropt/095M/ckpt.pt``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(
            repo_id,
            filename.strip("/"),
            revision=revision,
            cache_dir=cache_dir,
            token=os.environ.get("HF_TOKEN") or None,
            etag_timeout=ETAG_TIMEOUT_S,
        )
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the hub could not be reached"
        raise CheckpointError(
            f"{repo_id}/{filename} is not in the local Hugging Face cache and {why}; download it on a "
            f"connected machine (huggingface-cli download {repo_id} {filename}) and copy the cache "
            "(HF_HUB_CACHE) here, or pass a local file"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot fetch {repo_id}/{filename} from the hub: {exc}") from exc
    return Path(path)
