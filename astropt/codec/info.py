"""A codec's identity (spec, source, fingerprint) and the rule that tokens of two codecs never mix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

CodecSource = Literal["hub", "local", "shipped", "random"]


class CodecError(ValueError):
    """A codec spec that cannot be resolved or loaded; the message says what to do."""


@dataclass(frozen=True)
class CodecInfo:
    spec: str  # what resolved: "shipped", "random:0", a hub id, or an absolute path
    source: CodecSource
    fingerprint: str  # sha256 prefix of the weights
    trained: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_same_codec(expected: dict[str, Any] | CodecInfo, actual: CodecInfo, what: str) -> None:
    """Refuse to mix tokens of two codecs (fingerprints differ)."""
    exp_fp = (
        expected.fingerprint if isinstance(expected, CodecInfo) else expected.get("fingerprint")
    )
    exp_spec = expected.spec if isinstance(expected, CodecInfo) else expected.get("spec")
    if exp_fp != actual.fingerprint:
        raise CodecError(
            f"{what} was made with codec {exp_spec!r} (fingerprint {exp_fp}) but the codec "
            f"now loaded is {actual.spec!r} (fingerprint {actual.fingerprint}); tokens of two "
            f"codecs cannot be mixed. Load the original codec (codec={exp_spec!r}) or start a new run."
        )
