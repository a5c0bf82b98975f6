"""Which settings a run reads: what ``--resume`` and the benchmark grids compare, so that a setting a run never read
(``--pseudo-teacher`` with pseudo-labels off, ``--hill-lambda`` under ``--loss bce``) neither refuses a resume nor
retrains a finished cell when its default changes.

    settings_read(TrainConfig(pseudo_labels=False).to_dict())  # no pseudo_* key left

A setting is unread when one of three registries says so: the architecture's ``reads`` (settings only some
architectures read), the declared options of the losses and heads (each names its readers), or :data:`GATES` (a
switch that turns a group of settings on). Everything else counts as read, so a doubt keeps a setting compared.
"""

from __future__ import annotations

from ..config import DECLARED_OPTIONS, PSEUDO_LABEL_SETTINGS
from .architectures import ARCHITECTURES, unread_settings

SAMPLER_SETTINGS = ("repeat_threshold", "sampler_max_weight", "sampler_power", "sampler_max_repeats",
                    "sampler_replacement")
# (switch, the values at which it is off, the settings only a run with it on reads)
GATES: tuple[tuple[str, tuple, tuple[str, ...]], ...] = (
    ("pseudo_labels", (False,), PSEUDO_LABEL_SETTINGS),
    ("sampler", ("uniform",), SAMPLER_SETTINGS),  # uniform shuffling weighs no image
    ("class_weights", ("none",), ("cb_beta",)),
    ("logit_adjust", ("none",), ("la_tau",)),
    ("prior_estimate", ("mean",), ("prior_holdout",)),  # only em calibrates, on the held-out labels
)
# read by the training engine whatever the loss (the optimiser's gradient scale, the re-weighting wrapper)
ENGINE_READS = frozenset({"loss_reduction"})


def _unread_options(config: dict) -> set[str]:
    """Declared loss and head options that none of the run's components reads: its ``--loss``, the prior stage's
    ``--prior-loss`` and its ``--head``."""
    components = {f"--loss {config.get('loss')}", f"--loss {config.get('prior_loss')}", f"--head {config.get('head')}"}
    return {name for name, (_, readers) in DECLARED_OPTIONS.items()
            if name not in ENGINE_READS and not components & set(readers)}


def unread_by(config: dict) -> set[str]:
    """The settings of ``config`` (a resolved :class:`TrainConfig` as a dict) that its run does not read."""
    unread = set()
    arch = config.get("arch")
    if arch in ARCHITECTURES:  # "auto" (not resolved yet): every architecture's settings may be read
        unread |= set(unread_settings(arch))
        if ARCHITECTURES[arch].uses_priors:
            unread |= _unread_options(config)
    for switch, off, settings in GATES:
        if switch in config and config[switch] in off:
            unread |= set(settings)
    return unread


def settings_read(config: dict) -> dict:
    """``config`` without the settings its run does not read (:func:`unread_by`)."""
    unread = unread_by(config)
    return {key: value for key, value in config.items() if key not in unread}
