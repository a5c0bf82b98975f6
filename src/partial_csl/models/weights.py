"""State dicts: how one differs from what a model expects (named in one line, for the errors that refuse it), and how
many bytes of tensors a payload holds."""

from __future__ import annotations

import torch


def weight_mismatches(expected: dict, given: dict, shown: int = 5) -> list[str]:
    """How the weights ``given`` differ from those a model ``expected``: missing and unexpected names, shapes."""
    if not isinstance(given, dict):
        return [f"'model' is a {type(given).__name__}, not a dict of weights"]

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} is {tuple(given[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in expected.items()
              if k in given and tuple(getattr(given[k], "shape", ())) != tuple(v.shape)]
    problems = [f"{len(missing)} missing ({names(missing)})"] if missing else []
    problems += [f"{len(unexpected)} unexpected ({names(unexpected)})"] if unexpected else []
    return problems + shapes[:shown] + ([f"{len(shapes) - shown} more of another shape"] if len(shapes) > shown else [])


def tensor_bytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0
