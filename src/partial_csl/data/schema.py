"""Attribute schema: ordered attribute groups, their classes, and the target encoding.

The target encoding lives here and only here. A model predicts one score per class over all groups, in schema order
(for the default schema: neck_0..neck_6, sleeve_length_0..3, pattern_0..9 = 21 classes). A target vector uses
{1 positive, 0 negative, -1 unknown}:

* a known attribute value k gives 1 at class k of its group **and 0 at every other class of that group**: the classes
  of one attribute are mutually exclusive, so knowing the answer also annotates the negatives;
* an unknown attribute (``#N/A`` in the CSV) gives -1 across its whole group.

A user passes another schema as a small JSON or YAML file::

    {"groups": [{"name": "neck", "classes": 7}, {"name": "colour", "classes": ["red", "green", "blue"]}]}

``classes`` is either a count (names become ``<group>_<k>``) or the list of class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

UNKNOWN = -1


@dataclass(frozen=True)
class AttributeGroup:
    name: str
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class AttributeSchema:
    groups: tuple[AttributeGroup, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("an attribute schema needs at least one group")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate attribute group names in schema: {names}")
        classes = self.class_names
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate class names in schema: {classes}")
        for g in self.groups:
            if g.num_classes < 2:
                raise ValueError(f"attribute {g.name!r} needs at least 2 classes, got {g.num_classes}")

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def class_names(self) -> list[str]:
        return [c for g in self.groups for c in g.class_names]

    @property
    def num_classes(self) -> int:
        return sum(g.num_classes for g in self.groups)

    def group_slices(self) -> dict[str, slice]:
        """Column range of every group in the flat class vector."""
        slices, start = {}, 0
        for g in self.groups:
            slices[g.name] = slice(start, start + g.num_classes)
            start += g.num_classes
        return slices

    def encode(self, values: np.ndarray) -> np.ndarray:
        """(N, G) class indices with -1 for unknown -> (N, C) float32 targets in {-1, 0, 1}."""
        values = np.asarray(values, dtype=np.int64)
        if values.ndim != 2 or values.shape[1] != len(self.groups):
            raise ValueError(f"expected values of shape (N, {len(self.groups)}), got {values.shape}")
        targets = np.zeros((values.shape[0], self.num_classes), dtype=np.float32)
        for j, (g, sl) in enumerate(zip(self.groups, self.group_slices().values())):
            col = values[:, j]
            known = col != UNKNOWN
            if np.any(known & ((col < 0) | (col >= g.num_classes))):
                raise ValueError(f"attribute {g.name!r} has a value outside 0..{g.num_classes - 1}")
            targets[~known, sl] = UNKNOWN
            rows = np.flatnonzero(known)
            targets[rows, sl.start + col[known]] = 1.0
        return targets

    def decode(self, targets: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode` for targets it produced: (N, C) -> (N, G), -1 where the group is unknown."""
        targets = np.asarray(targets)
        out = np.full((targets.shape[0], len(self.groups)), UNKNOWN, dtype=np.int64)
        for j, sl in enumerate(self.group_slices().values()):
            block = targets[:, sl]
            known = (block != UNKNOWN).all(axis=1) & (block == 1).any(axis=1)
            out[known, j] = block[known].argmax(axis=1)
        return out

    def to_dict(self) -> dict:
        return {"groups": [{"name": g.name, "classes": list(g.class_names)} for g in self.groups]}

    @classmethod
    def from_dict(cls, data: dict) -> AttributeSchema:
        if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
            raise ValueError("a schema must be a mapping with a 'groups' list")
        groups = []
        for i, item in enumerate(data["groups"]):
            if not isinstance(item, dict) or "name" not in item or "classes" not in item:
                raise ValueError(f"schema group #{i} needs 'name' and 'classes', got {item!r}")
            name, classes = str(item["name"]), item["classes"]
            if isinstance(classes, int):
                names = tuple(f"{name}_{k}" for k in range(classes))
            elif isinstance(classes, list):
                names = tuple(str(c) for c in classes)
            else:
                raise ValueError(f"schema group {name!r}: 'classes' must be a count or a list of names")
            groups.append(AttributeGroup(name, names))
        return cls(tuple(groups))


def default_schema() -> AttributeSchema:
    """The garment schema of the mission: neck 7, sleeve_length 4, pattern 10 (21 classes)."""
    return AttributeSchema.from_dict(
        {"groups": [{"name": "neck", "classes": 7}, {"name": "sleeve_length", "classes": 4},
                    {"name": "pattern", "classes": 10}]}
    )


def load_schema(path: str | Path | None) -> AttributeSchema:
    """Read a schema from a JSON or YAML file; ``None`` gives the default garment schema."""
    if path is None:
        return default_schema()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"schema file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid JSON/YAML: {err}") from err
    try:
        return AttributeSchema.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
