"""Declared settings: a component (a loss, an architecture) names the settings it reads, and the run's
configuration and command line are generated from those declarations.

    GAMMA = Option("hill_lambda", 1.5, "lambda of the negative loss (lambda - p) p^2")

An option is a field of :class:`partial_csl.engine.config.TrainConfig` and a flag of ``train.py`` (``--hill-lambda``
and ``--hill_lambda``); ``param`` names the constructor's keyword where it differs (``loss_reduction`` ->
``reduction``). Several components may declare the same option object (``gamma_neg`` is read by ``partial_asl`` and
``asl``): :func:`merge_options` joins them and refuses two different declarations under one name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str = ""
    type: type | None = None  # None: the default's type (bool, int, float, str); required when the default is None
    choices: tuple[str, ...] | None = None
    param: str | None = None  # the constructor's keyword, when it is not ``name``

    @property
    def value_type(self) -> type:
        if self.type is not None:
            return self.type
        if self.default is None:
            raise TypeError(f"option {self.name!r}: a default of None needs an explicit type")
        return type(self.default)

    @property
    def annotation(self) -> Any:
        """The dataclass field's type (``float | None`` for an option whose default is None)."""
        return self.value_type | None if self.default is None else self.value_type

    @property
    def keyword(self) -> str:
        return self.param or self.name


def merge_options(declarations: Iterable[tuple[str, Iterable[Option]]]) -> dict[str, tuple[Option, list[str]]]:
    """``{name: (option, [owners that read it])}`` from ``(owner, options)`` pairs, in first-declared order."""
    merged: dict[str, tuple[Option, list[str]]] = {}
    for owner, options in declarations:
        for option in options:
            if option.name in merged and merged[option.name][0] != option:
                raise ValueError(f"option {option.name!r} is declared twice, differently "
                                 f"({merged[option.name][1][0]} and {owner}): share one declaration")
            merged.setdefault(option.name, (option, []))[1].append(owner)
    return merged


# shared by a head and a loss (the cosine head's s cos(theta) logits, which the angular-margin loss takes apart): one
# declaration here, since models and losses know nothing of each other
COSINE_SCALE = Option("cosine_scale", 30.0, "the scale s of the cosine head's logits s cos(theta), which --loss aam "
                      "reads too", param="scale")
