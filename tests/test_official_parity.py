"""benchmarks/official_parity.py against stand-ins for the official loss: one that computes the reference's loss (the
project's, summed over the batch) trains step for step like the project, one with a different loss does not."""

from __future__ import annotations

import textwrap

import official_parity  # benchmarks/ is on the test path (conftest)
import pytest

STAND_IN_LOSS = '''
import pandas as pd
import torch
from partial_csl.losses.partial import PartialSelectiveLoss as Ours


class PartialSelectiveLoss(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        prior = pd.read_csv(args.prior_path).values[:, 1].astype(float) if args.prior_path else None
        self.loss = Ours(args.partial_loss_mode, args.gamma_pos, args.gamma_neg, args.gamma_unann, clip=args.clip,
                         likelihood_topk=args.likelihood_topk, prior_threshold=args.prior_threshold,
                         prior=prior if args.partial_loss_mode == "selective" else None, reduction="sum")

    def forward(self, logits, targets):
        return SCALE * self.loss(logits, targets.cuda())
'''

STAND_IN_HELPERS = '''
def add_weight_decay(model, weight_decay=1e-4):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias")]
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
'''


def _stand_in(tmp_path, scale: float):
    repo = tmp_path / f"official_{scale}"
    (repo / "src" / "helper_functions").mkdir(parents=True)
    (repo / "src" / "loss_functions").mkdir(parents=True)
    (repo / "src" / "helper_functions" / "helper_functions.py").write_text(STAND_IN_HELPERS)
    loss = STAND_IN_LOSS.replace("SCALE", repr(scale))
    (repo / "src" / "loss_functions" / "partial_asymmetric_loss.py").write_text(textwrap.dedent(loss))
    return repo


def _differences(text: str) -> dict[str, float]:
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "mode" not in line]
    return {cells[0].strip(): float(cells[3]) for cells in rows}


ARGS = ["--model-name", "test_resnet", "--steps", "10", "--batch-size", "8", "--image-size", "32", "--classes", "6",
        "--augmentation-images", "0"]


def test_the_reference_loss_trains_step_for_step_like_the_project(tmp_path):
    text = official_parity.main(["--repo", str(_stand_in(tmp_path, 1.0)), "--out", str(tmp_path / "out"), *ARGS])
    assert _differences(text) == {"ignore": 0.0, "negative": 0.0, "selective": 0.0}
    assert (tmp_path / "out" / "parity.md").read_text() == text


def test_a_different_loss_is_caught(tmp_path):
    # a loss 1000x the reference's: Adam divides the scale out, but not from eps and the L2 term
    text = official_parity.main(["--repo", str(_stand_in(tmp_path, 1000.0)), "--out", str(tmp_path / "o"), *ARGS])
    assert all(gap > 1e-6 for gap in _differences(text).values())


def test_a_folder_without_the_official_loss_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a checkout of the official CSL code"):
        official_parity.main(["--repo", str(tmp_path), *ARGS])
