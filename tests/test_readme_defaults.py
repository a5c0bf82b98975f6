"""Every default in README's training-options table is the one ``train.py`` uses (its parser's default)."""

from __future__ import annotations

import argparse
import re

import pytest
from conftest import ROOT

import train as train_script

ROW = re.compile(r"^\| (`--[^|]+) \| ([^|]*) \|")


def _flags(cell: str) -> list[str]:
    """``--a``, ``--b`` -> [--a, --b]; ``--gamma_pos/neg/unann`` -> [--gamma_pos, --gamma_neg, --gamma_unann]."""
    flags = []
    for item in (part.strip().strip("`") for part in cell.split(",")):
        if "/" in item:
            first, *rest = item.split("/")
            stem = first[:first.rindex("_") + 1]
            flags += [first, *(stem + suffix for suffix in rest)]
        else:
            flags.append(item)
    return flags


def documented_defaults() -> list[tuple[str, str]]:
    """(flag, documented default) for every flag of the table, a single default standing for all of its row."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Training options"):text.index("`python train.py --help` lists everything")]
    pairs = []
    for line in table.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        flags = _flags(match.group(1))
        values = [v.strip() for v in re.split(r", | / ", match.group(2).strip())]
        assert len(values) in (1, len(flags)), f"README row {line[:60]}: {len(flags)} flags, {len(values)} defaults"
        pairs += zip(flags, values * len(flags) if len(values) == 1 else values)
    return pairs


def _matches(documented: str, action: argparse.Action, default: object) -> bool:
    value = documented.strip("`")
    if value in ("none", "the model's"):  # nothing given: the model's own (or no) value
        return default is None
    if value in ("off", "on"):
        return default is (value == "on")
    if value == "auto" and isinstance(action, argparse.BooleanOptionalAction):
        return default is None  # --x / --no-x left unset: decided at run time
    if isinstance(default, bool) or default is None:
        return False
    if isinstance(default, int | float):
        return float(value) == float(default)
    return value == str(default)


PARSER = train_script.get_args_parser()
ACTIONS = {option: action for action in PARSER._actions for option in action.option_strings}


def test_the_table_documents_options_that_exist():
    pairs = documented_defaults()
    assert len(pairs) >= 25
    assert [flag for flag, _ in pairs if flag not in ACTIONS] == []


@pytest.mark.parametrize("flag,documented", documented_defaults())
def test_every_documented_default_is_the_parser_default(flag, documented):
    action = ACTIONS[flag]
    default = PARSER.get_default(action.dest)
    assert _matches(documented, action, default), f"README says {flag} defaults to {documented}; it is {default!r}"
