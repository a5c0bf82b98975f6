"""Which settings a run reads (partial_csl.engine.setup.read_settings), and the three comparisons that use it: the
resume check, the benchmark grids' finished cells and the post-hoc adjustment of a trained checkpoint."""

from __future__ import annotations

from dataclasses import replace

import grid
import pytest

from partial_csl.engine.config import PSEUDO_LABEL_SETTINGS, TrainConfig
from partial_csl.engine.setup.read_settings import settings_read, unread_by
from partial_csl.engine.training.run_folder import RunFolderError, check_resume_matches

CSL = TrainConfig(arch="csl", class_weights="none", logit_adjust="none")
MTL = TrainConfig(arch="mtl", class_weights="none", logit_adjust="balanced_softmax")


def test_pseudo_label_settings_are_read_only_with_pseudo_labels():
    assert set(PSEUDO_LABEL_SETTINGS) <= unread_by(CSL.to_dict())
    assert not set(PSEUDO_LABEL_SETTINGS) & unread_by(replace(CSL, pseudo_labels=True).to_dict())
    assert "pseudo_labels" in settings_read(CSL.to_dict())  # the switch itself is always read


def test_an_architecture_reads_its_own_settings_and_the_losses_options_only_under_csl():
    mtl = unread_by(MTL.to_dict())
    assert {"gamma_neg", "hill_lambda", "partial_loss_mode", "prior_epochs", "loss_reduction"} <= mtl
    assert not {"task_weighting", "dwa_temperature", "la_tau"} & mtl
    csl = unread_by(CSL.to_dict())
    assert {"task_weighting", "dwa_temperature", "la_tau"} <= csl  # la_tau: no logit adjustment


def test_a_loss_option_counts_as_read_when_the_loss_the_prior_loss_or_the_head_reads_it():
    bce = unread_by(replace(CSL, loss="bce", prior_loss="bce").to_dict())
    assert {"gamma_neg", "hill_lambda", "partial_loss_mode", "cosine_scale"} <= bce
    assert "loss_reduction" not in bce  # the engine reads it for every loss
    prior_stage = unread_by(replace(CSL, loss="bce", prior_loss="partial_asl").to_dict())
    assert "gamma_neg" not in prior_stage and "hill_lambda" in prior_stage
    cosine = unread_by(replace(CSL, loss="bce", prior_loss="bce", head="cosine").to_dict())
    assert "cosine_scale" not in cosine and "aam_margin" in cosine


def test_gates_and_an_unresolved_architecture():
    assert {"sampler_power", "repeat_threshold", "cb_beta"} <= unread_by(CSL.to_dict())
    weighted = unread_by(replace(CSL, sampler="balanced", class_weights="effective_number").to_dict())
    assert not {"sampler_power", "repeat_threshold", "cb_beta"} & weighted
    auto = unread_by(TrainConfig().to_dict())  # arch "auto": any architecture may read its settings
    assert not {"gamma_neg", "task_weighting"} & auto


def test_resume_accepts_a_changed_setting_the_run_does_not_read_and_refuses_one_it_reads(tmp_path):
    path = tmp_path / "config.json"
    saved = replace(CSL, epochs=3, pseudo_teacher="ema").to_dict()
    check_resume_matches(replace(CSL, epochs=3), saved, path)  # pseudo-labels off: the teacher is not read
    pseudo = replace(CSL, epochs=3, pseudo_labels=True)
    with pytest.raises(RunFolderError, match=r"pseudo_teacher: saved 'ema', now 'validated'"):
        check_resume_matches(pseudo, {**saved, "pseudo_labels": True}, path)
    with pytest.raises(RunFolderError, match=r"pseudo_labels: saved False, now True") as err:
        check_resume_matches(pseudo, saved, path)
    assert "pseudo_teacher" not in str(err.value)  # the switch is what differs


def test_a_grid_cell_is_reused_when_only_an_unread_setting_changed(tmp_path):
    calls = []
    read = grid.read_by_training
    settings = replace(CSL, loss="bce", prior_loss="bce").to_dict()
    first = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 1.0}, settings, read=read)
    again = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 2.0},
                           {**settings, "hill_lambda": 3.0, "pseudo_warmup": 5}, read=read)
    assert calls == [1] and again["mAP"] == first["mAP"]  # neither is read under --loss bce without pseudo-labels
    changed = grid.resumable(tmp_path, lambda: calls.append(1) or {"mAP": 3.0}, {**settings, "loss_reduction": "sum"},
                             read=read)
    assert calls == [1, 1] and changed["mAP"] == 3.0
    auto = TrainConfig(dataset="coco").to_dict()  # "auto" resolves to csl for COCO-format data, as the run would
    assert "task_weighting" not in read(auto) and read(auto)["arch"] == "csl"


def test_a_run_saved_before_a_default_changed_is_read_with_the_old_behaviour(tmp_path):
    from partial_csl.engine.config import BEFORE_THE_SETTING, with_new_defaults

    saved = replace(CSL, pseudo_labels=True).to_dict()
    del saved["pseudo_teacher"]  # saved before --pseudo-teacher existed: the EMA teacher was the only one
    assert BEFORE_THE_SETTING["pseudo_teacher"] == "ema" != TrainConfig.pseudo_teacher
    assert with_new_defaults(saved)["pseudo_teacher"] == "ema"
    path = tmp_path / "config.json"
    check_resume_matches(replace(CSL, pseudo_labels=True, pseudo_teacher="ema"), saved, path)
    with pytest.raises(RunFolderError, match=r"pseudo_teacher: saved 'ema' \(not saved: what runs before the "
                                             r"setting used\), now 'validated'"):
        check_resume_matches(replace(CSL, pseudo_labels=True), saved, path)
    assert grid.same_settings(saved, replace(CSL, pseudo_labels=True, pseudo_teacher="ema").to_dict(),
                              grid.saved_defaults(), grid.read_by_training)
    assert not grid.same_settings(saved, replace(CSL, pseudo_labels=True).to_dict(), grid.saved_defaults(),
                                  grid.read_by_training)


def test_settings_added_later_stand_for_what_older_runs_did():
    from partial_csl.engine.config import with_new_defaults

    saved = replace(CSL, loss="asl").to_dict()
    for key in ("prior_loss", "prior_holdout", "decoder_learnable_queries"):
        del saved[key]
    filled = with_new_defaults(saved)
    # the prior stage trained under the main loss, calibrated in-sample, and ML-Decoder learnt its queries
    assert (filled["prior_loss"], filled["prior_holdout"], filled["decoder_learnable_queries"]) == ("asl", 0.0, True)
    assert "prior_holdout" in unread_by(filled)  # read only by em priors, so a mean-prior run resumes as it was
    assert "prior_holdout" not in unread_by({**filled, "prior_estimate": "em"})


def test_the_engine_reads_a_loss_option_only_where_the_loss_declares_it():
    """The reads outside a loss's constructor that read_settings relies on: the prior-stage decision (run.py) reads
    the selective settings of a loss that takes priors, and the per-attribute heads' loss has its own reduction."""
    from partial_csl.engine.config import DECLARED_OPTIONS
    from partial_csl.losses import LOSSES, loss_uses_priors
    from partial_csl.losses.multitask import MultiTaskLoss

    selective = {"partial_loss_mode", "prior_threshold", "likelihood_topk", "likelihood_topk_scope"}
    for name in LOSSES:
        if loss_uses_priors(name):
            readers = {option for option in selective if f"--loss {name}" in DECLARED_OPTIONS[option][1]}
            assert readers == selective, name
    assert MultiTaskLoss.reduction == "mean"  # so build.py never falls back to --loss-reduction for mtl
