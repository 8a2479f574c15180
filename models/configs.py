"""Network configs that round-trip through a checkpoint manifest's JSON."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

C = TypeVar("C", bound="ManifestConfig")


class ManifestConfig:
    """Mixin for a (frozen) dataclass config.

    JSON has no tuples, so `to_dict` writes tuple fields as lists and `from_dict` turns the lists of
    tuple-typed fields back into tuples: a config read back from manifest.json then compares equal to
    the one that was saved. A key the dataclass does not know is a TypeError, which the checkpoint
    loader reports as a config that does not describe the stored weights.
    """

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})
