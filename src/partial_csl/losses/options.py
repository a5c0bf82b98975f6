"""Settings several losses read, declared once (see :mod:`partial_csl.options`); a loss's own settings are declared
in its module."""

from ..options import Option

REDUCTION = Option("loss_reduction", "mean", "mean: per sample; sum: the reference's raw sum", choices=("mean", "sum"),
                   param="reduction")
GAMMA_POS = Option("gamma_pos", 0.0, "focusing exponent of the positive terms")
GAMMA_NEG = Option("gamma_neg", 1.0, "focusing exponent of the negative terms")
CLIP = Option("clip", 0.0, "probability shift for negatives (ASL clip)")
FOCAL_GAMMA = Option("focal_gamma", 2.0, "the focusing exponent of the focal terms")
LABEL_SMOOTHING = Option("label_smoothing", 0.1, "the smoothing eps of the targets")
