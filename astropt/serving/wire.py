"""Inference requests and results, and their one wire form (JSON; arrays as base64 bytes).

What a client of the runtime sends (:class:`InferenceRequest`) and gets back
(:class:`InferenceResult`), packed and unpacked here only, so the API and the Celery worker
cannot drift apart. Pickle is never used: arrays travel as dtype + shape + raw bytes.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from astropt.finetune.predict import Prediction
from astropt.images import Cube
from astropt.inference.errors import ErrorPayload
from astropt.inference.pipeline import Pooling, Reconstruction, ReconstructOptions
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL

RequestKind = Literal["reconstruct", "embed", "predict"]
RECONSTRUCTION_ARRAYS = ("original", "codec", "model", "tokens", "model_tokens")


def pack_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    return {
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode(),
    }


@overload
def unpack_array(packed: dict[str, Any]) -> np.ndarray: ...
@overload
def unpack_array(packed: None) -> None: ...
def unpack_array(packed: dict[str, Any] | None) -> np.ndarray | None:
    if packed is None:
        return None
    dtype = np.dtype(packed["dtype"])
    if dtype.kind not in "iuf":
        raise ValueError(f"refusing array dtype {dtype}")
    return (
        np.frombuffer(base64.b64decode(packed["data"]), dtype=dtype).reshape(packed["shape"]).copy()
    )


@dataclass
class InferenceRequest:
    """One image to reconstruct (``options``), embed (``pooling``) or predict labels for (a
    fine-tuned checkpoint) with a checkpoint's model.

    An embedding may also name the block it pools (``layer``), a same-shape model initialised
    from ``random_init`` instead of the checkpoint's weights, and what the model must read
    (``reads``, a catalogue's record of its inputs: :meth:`ModelReader.describe`): how a query
    image is embedded into a catalogue's space."""

    kind: RequestKind
    checkpoint: Path
    cube: Cube
    options: ReconstructOptions | None = None
    pooling: Pooling = DEFAULT_POOL
    centre: int = DEFAULT_CENTRE  # k of the centre pooling
    layer: int = -1
    random_init: int | None = None
    reads: dict[str, Any] | None = None

    @property
    def mode(self) -> str:
        """What decides how it is computed: the reconstruction mode, or the pooling (and the
        layer, weights and inputs of a catalogue's embedding)."""
        if self.options is not None:
            return self.options.mode
        mode = f"centre{self.centre}" if self.pooling == "centre" else self.pooling
        if self.catalogue_recipe:
            mode += f"@{self.layer}:{self.random_init}:{sorted((self.reads or {}).items())}"
        return mode

    @property
    def catalogue_recipe(self) -> bool:
        """An embedding with a layer, random-init weights or expected inputs of its own."""
        return self.layer != -1 or self.random_init is not None or self.reads is not None

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint),
            "flux": pack_array(self.cube.flux),
            "bands": list(self.cube.bands),
            "warnings": list(self.cube.warnings),
            "options": asdict(self.options) if self.options else None,
            "pooling": self.pooling,
            "centre": self.centre,
            "layer": self.layer,
            "random_init": self.random_init,
            "reads": self.reads,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> InferenceRequest:
        flux = unpack_array(data["flux"])
        if flux is None:
            raise ValueError("an inference request needs an image")
        cube = Cube(flux.astype(np.float32), tuple(data["bands"]), list(data.get("warnings", [])))
        options = ReconstructOptions(**data["options"]) if data.get("options") else None
        return cls(
            data["kind"],
            Path(data["checkpoint"]),
            cube,
            options,
            data.get("pooling", DEFAULT_POOL),
            int(data.get("centre", DEFAULT_CENTRE)),
            int(data.get("layer", -1)),
            None if data.get("random_init") is None else int(data["random_init"]),
            data.get("reads"),
        )


@dataclass
class InferenceResult:
    """One request's answer: a :class:`Reconstruction`, ``{pooling: float32[C]}`` or a
    :class:`Prediction`."""

    value: Reconstruction | dict[str, np.ndarray] | Prediction
    codec_info: dict[str, Any]
    compute_s: float  # the model + codec time of the batch it ran in

    def to_wire(self) -> dict[str, Any]:
        if isinstance(self.value, Reconstruction):
            recon = self.value
            value: dict[str, Any] = {
                **{
                    name: None if getattr(recon, name) is None else pack_array(getattr(recon, name))
                    for name in RECONSTRUCTION_ARRAYS
                },
                "mode": recon.mode,
                "bands": list(recon.bands),
                "token_accuracy": recon.token_accuracy,
                "mse": recon.mse,
                "codec_mse": recon.codec_mse,
                "warnings": list(recon.warnings),
            }
        elif isinstance(self.value, Prediction):
            value = self.value.to_dict()
        else:
            value = {name: pack_array(vector) for name, vector in self.value.items()}
        return {"value": value, "codec_info": self.codec_info, "compute_s": self.compute_s}

    @classmethod
    def from_wire(cls, data: dict[str, Any], kind: RequestKind) -> InferenceResult:
        packed = data["value"]
        value: Reconstruction | dict[str, np.ndarray] | Prediction
        if kind == "predict":
            value = Prediction.from_dict(packed)
        elif kind == "embed":
            value = {
                name: unpack_array(vector).astype(np.float32) for name, vector in packed.items()
            }
        else:
            value = Reconstruction(
                mode=packed["mode"],
                bands=tuple(packed["bands"]),
                token_accuracy=packed["token_accuracy"],
                mse=packed["mse"],
                codec_mse=packed["codec_mse"],
                warnings=list(packed["warnings"]),
                **{name: unpack_array(packed[name]) for name in RECONSTRUCTION_ARRAYS},
            )
        return cls(value, dict(data["codec_info"]), float(data["compute_s"]))


def reply_to_wire(outcome: InferenceResult | ErrorPayload) -> dict[str, Any]:
    """A worker's answer: the result, or ``{"error": payload}`` for an expected error."""
    if isinstance(outcome, ErrorPayload):
        return {"error": outcome.to_wire()}
    return outcome.to_wire()


def reply_from_wire(reply: dict[str, Any], kind: RequestKind) -> InferenceResult:
    """The result of a worker's answer; raises the original error class for an error."""
    if "error" in reply:
        raise ErrorPayload.from_wire(reply["error"]).exception()
    return InferenceResult.from_wire(reply, kind)
