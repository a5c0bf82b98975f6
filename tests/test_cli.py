"""CLI conventions of the five scripts: defaults in every --help, usage examples printed as real multi-line commands
(and accepted by the parser), the same flag spellings everywhere, train.py --config, TensorBoard's scalars."""

from __future__ import annotations

import argparse
import json
import re
import shlex

import pandas as pd
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_runs import split_data, train_tiny

import export as export_script
import images_train_test_valid_split as split_script
import infer as infer_script
import train as train_script
import validate as validate_script
from partial_csl.engine.checkpoint import load_checkpoint

SCRIPTS = {"train.py": train_script, "validate.py": validate_script, "infer.py": infer_script,
           "export.py": export_script, "images_train_test_valid_split.py": split_script}
SHARED = ("checkpoint", "output_dir", "images", "csv", "schema", "batch_size", "workers", "device", "amp", "seed",
          "threshold", "on_bad_rows", "image")


def parser_of(name: str) -> argparse.ArgumentParser:
    return SCRIPTS[name].get_args_parser()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.default is not argparse.SUPPRESS]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_help_shows_every_default(name):
    parser = parser_of(name)
    text = parser.format_help()
    formatter = parser._get_formatter()
    for action in options(parser):
        if not action.required:
            assert "(default" in formatter._get_help_string(action), (name, action.option_strings)
    assert text.count("(default") >= len([a for a in options(parser) if not a.required])


def examples(name: str) -> list[str]:
    """The usage examples of a script's --help for that script, joined at their continuations."""
    text = parser_of(name).format_help()
    commands, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is not None:
            current += " " + stripped.rstrip("\\")
            if not stripped.endswith("\\"):
                commands.append(current)
                current = None
        elif stripped.startswith(f"python {name}"):
            if stripped.endswith("\\"):
                current = stripped.rstrip("\\")
            else:
                commands.append(stripped)
    return commands


@pytest.mark.parametrize("name", SCRIPTS)
def test_usage_examples_print_as_multi_line_commands_that_parse(name):
    text = parser_of(name).format_help()
    assert re.search(r" \\\n {8}--", text), f"{name}: no continued example line in --help"
    found = examples(name)
    assert found, name
    for command in found:
        argv = shlex.split(command)[2:]
        parser_of(name).parse_args(argv)  # exits (SystemExit) on an unknown flag or a bad value


def test_the_same_flags_are_spelled_the_same_in_every_script():
    seen: dict[str, dict[str, set[str]]] = {}
    for name in SCRIPTS:
        for action in options(parser_of(name)):
            for flag in (f for f in action.option_strings if not f.startswith("--no-")):
                # both spellings of every flag, in all five scripts
                assert {flag.replace("_", "-"), "--" + flag[2:].replace("-", "_")} <= set(action.option_strings), \
                    (name, flag)
            if action.dest in SHARED:  # the split script's old --out-dir aside
                seen.setdefault(action.dest, {})[name] = {f for f in action.option_strings if "out_" not in f
                                                          and "out-" not in f}
    for dest, by_script in seen.items():
        spellings = {frozenset(s) for s in by_script.values()}
        assert len(spellings) == 1, (dest, by_script)
    assert {"train.py", "validate.py", "images_train_test_valid_split.py"} <= set(seen["output_dir"])


def test_old_spellings_still_work():
    split = split_script.get_args_parser().parse_args(["--csv", "a.csv", "--images", "i", "--out-dir", "o"])
    assert split.output_dir == "o"
    val = validate_script.get_args_parser().parse_args(["--checkpoint", "c", "--output_dir", "o", "--batch_size",
                                                         "4", "--on_bad_rows", "skip"])
    assert (val.output_dir, val.batch_size, val.on_bad_rows) == ("o", 4, "skip")
    assert infer_script.get_args_parser().parse_args(["--output", "p.csv", "--batch_size", "3"]).batch_size == 3


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    split, images = split_data(root, n=32)
    train_tiny(split, images, root / "a", "--cache-images", epochs=2)
    return root, split, images


def saved_config(run) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def metrics(run) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["seconds"])


def test_a_runs_own_config_json_repeats_it(run_a):
    root, _, _ = run_a
    assert train_script.main(["--config", str(root / "a" / "config.json"), "--output-dir", str(root / "b")]) == 0
    a, b = saved_config(root / "a"), saved_config(root / "b")
    assert {k for k in a if a[k] != b[k]} == {"output_dir"}
    pd.testing.assert_frame_equal(metrics(root / "a"), metrics(root / "b"))


def test_a_yaml_config_with_command_line_overrides(run_a, tmp_path):
    _, split, images = run_a
    settings = {"train-csv": str(split / "train.csv"), "val_csv": str(split / "valid.csv"), "images": str(images),
                "model-name": "test_resnet", "image_size": 32, "batch_size": 8, "workers": 0, "amp": False,
                "lr": 1e-3, "ema_decay": 0.9, "partial_loss_mode": "ignore", "epochs": 5, "cache-images": True,
                "ema_warmup": True}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "c"
    assert train_script.main(["--config", str(config), "--epochs", "1", "--no-cache-images", "--output-dir",
                              str(out)]) == 0
    saved = saved_config(out)
    assert (saved["epochs"], saved["cache_images"], saved["ema_warmup"], saved["amp"]) == (1, False, True, False)
    assert saved["model_name"] == "test_resnet" and saved["image_size"] == 32 and saved["output_dir"] == str(out)


def test_a_bad_config_file_is_refused_with_its_name(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert train_script.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "learning_rate" in err
    config.write_text("epochs: [1, 2\n")
    assert train_script.main(["--config", str(config)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    config.write_text("augment: wild\n")
    with pytest.raises(SystemExit):  # the file's values get the command line's checks
        train_script.main(["--config", str(config)])


def test_tensorboard_gets_learning_rate_accuracy_and_final_ap(run_a):
    root, _, _ = run_a
    events = EventAccumulator(str(root / "a" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"main/lr", "main/train_loss", "main/val_mAP", "main/accuracy/neck", "main/accuracy/pattern",
            "final/mAP"} <= tags
    ap = load_checkpoint(root / "a" / "checkpoints" / "best.pt")["metrics"]["ap_per_class"]
    assert {f"final/AP/{c}" for c, v in ap.items() if v is not None} == {t for t in tags if t.startswith("final/AP")}
    assert len(ap) == 21 and sum(v is not None for v in ap.values()) > 10
    assert [e.step for e in events.Scalars("main/lr")] == [1, 2]


def test_call_reporting_errors_prints_one_line_for_expected_errors_and_lets_others_through(capsys, tmp_path):
    from partial_csl.cli import call_reporting_errors

    assert call_reporting_errors(lambda: 7, (ValueError,)) == 7
    assert call_reporting_errors(lambda: int("x"), (ValueError,)) is None
    assert capsys.readouterr().err == "error: invalid literal for int() with base 10: 'x'\n"
    missing = tmp_path / "gone" / "f.txt"
    assert call_reporting_errors(lambda: missing.write_text("x"), (ValueError,)) is None
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    with pytest.raises(KeyError):
        call_reporting_errors(lambda: {}["k"], (ValueError,))


def test_a_run_record_leaves_out_what_its_run_did_not_read_and_a_written_file_keeps_everything(tmp_path):
    from partial_csl.cli import config_file_argv
    from partial_csl.engine.config import TrainConfig, with_new_defaults
    from partial_csl.engine.setup.read_settings import unread_by

    parser = train_script.get_args_parser()
    unread = lambda saved: unread_by(with_new_defaults(saved))  # noqa: E731 (train.py's own rule)
    # a run saved under the old teacher default, without pseudo-labels: its teacher was never read
    saved = TrainConfig(arch="mtl", logit_adjust="balanced_softmax", pseudo_teacher="ema", hill_lambda=2.0).to_dict()
    record = tmp_path / "config.json"
    record.write_text(json.dumps({"config": saved}))
    argv = config_file_argv(parser, ["--config", str(record)], unread=unread)
    assert not any(token.startswith(("--pseudo_teacher", "--hill_lambda")) for token in argv)
    assert "--arch=mtl" in argv and "--logit_adjust=balanced_softmax" in argv
    written = tmp_path / "run.yaml"  # a file a person wrote: every setting in it was chosen
    written.write_text("pseudo_teacher: ema\n")
    assert "--pseudo_teacher=ema" in config_file_argv(parser, ["--config", str(written)], unread=unread)
