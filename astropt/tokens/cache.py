"""Write-through for streams: a streamed source is tokenised once per codec into the token cache.

``data.cache_tokens`` (on by default) makes a training run on a streamed Hugging Face source
tokenise the whole stream once, in order, with DataLoader workers decoding and the codec batched
(:func:`astropt.tokens.tokenise`, resumable shard by shard), into ``<token cache>/streams/<key>``,
keyed by the source (data set, split, image column, bands, and the files' signature for a local
directory or the hub revision when online) and the codec's fingerprint; every epoch, and every
later run on the same source and codec, then reads the tokens and calls the codec zero times.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from astropt.config import DataSettings
from astropt.tokenise import token_cache_dir
from astropt.tokens.format import MANIFEST


def stream_cache_dir(data: DataSettings, codec_fingerprint: str) -> Path:
    local = Path(data.hf_dataset).expanduser()
    source: dict[str, object] = {
        "dataset": str(local.resolve()) if local.exists() else data.hf_dataset,
        "split": data.hf_split,
        "image_column": data.image_column,
        "bands": list(data.bands),
    }
    if local.exists():
        files = sorted(p for p in local.rglob("*") if p.is_file())
        source["files"] = [(p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    else:  # the hub's revision when it can be asked (offline: the id and split alone)
        from astropt.tokens.rows import _hub_revision

        source["revision"] = _hub_revision(data.hf_dataset, local)
    blob = json.dumps({"source": source, "codec": codec_fingerprint}, sort_keys=True, default=str)
    return token_cache_dir() / "streams" / hashlib.sha256(blob.encode()).hexdigest()[:24]


def is_complete(path: Path) -> bool:
    return (path / MANIFEST).is_file()
