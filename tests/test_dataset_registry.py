"""The --dataset registry: an entry carries its readers, default architecture and capabilities, and nothing else
tests a format's name."""

from __future__ import annotations

import dataclasses

import pytest

from partial_csl.engine.config import TrainConfig
from partial_csl.engine.setup import formats as data_module
from partial_csl.engine.setup.architectures import resolve_auto
from partial_csl.engine.setup.formats import DATASETS, get_dataset, load_training_data
from partial_csl.engine.training.finish import check_run_settings


def test_every_format_has_both_readers_and_a_known_default_architecture():
    from partial_csl.engine.setup.architectures import ARCHITECTURES
    for name, entry in DATASETS.items():
        assert callable(entry.read_training) and callable(entry.read_evaluation), name
        assert entry.default_arch in ARCHITECTURES and entry.help.startswith(f"{name}:")
    with pytest.raises(ValueError, match="unknown dataset type 'parquet'; expected one of"):
        get_dataset("parquet")


def test_a_new_format_is_one_entry_whose_capabilities_drive_the_engine(monkeypatch, tmp_path):
    # a fully labelled multi-label format: auto trains its default architecture, the simulators apply, and
    # abstention (which needs attribute groups) is refused before anything is read
    entry = dataclasses.replace(DATASETS["coco"], default_arch="csl", fully_labelled=True, attribute_groups=False,
                                help="tags: a tag list per image")
    monkeypatch.setitem(DATASETS, "tags", entry)
    assert resolve_auto(TrainConfig(dataset="tags")).arch == "csl"
    with pytest.raises(ValueError, match="abstain"):
        check_run_settings(TrainConfig(dataset="tags", abstain_accuracy=0.9))
    partial = dataclasses.replace(entry, fully_labelled=False, default_arch="mtl")
    monkeypatch.setitem(DATASETS, "tags", partial)
    assert resolve_auto(TrainConfig(dataset="tags")).arch == "mtl"
    with pytest.raises(ValueError, match=r"fully labelled data \(--dataset coco\), not of --dataset tags"):
        load_training_data(TrainConfig(dataset="tags", simulate_partial_type="rps"), tmp_path)
    assert data_module.DATASETS["tags"] is partial
