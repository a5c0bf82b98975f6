"""Command-line conventions shared by the five scripts (``train.py``, ``validate.py``, ``infer.py``, ``export.py``,
``images_train_test_valid_split.py``), in the way timm's scripts behave.

* :class:`HelpFormatter`: every ``--help`` shows each option's default, and the usage examples of a script's
  docstring print as written (multi-line commands with their ``\\`` continuations).
* :func:`add_option`: one option in both spellings (``--batch-size`` and ``--batch_size``), plus old names kept as
  aliases so that no existing command breaks.
* :func:`call_reporting_errors`: a script's work, with each expected error printed as one ``error: ...`` line
  instead of a traceback (the script then exits 2).
* :func:`config_file_argv`: ``train.py --config run.yaml|config.json``: the file's settings become command-line
  flags placed before the real ones, so that the command line overrides the file and every value goes through the
  same type and choice checks as a typed flag. A run's own ``config.json`` (settings nested under ``config``) is
  such a file, so a run can be repeated from it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from .options import Option
from .safe_io import describe_os_error

T = TypeVar("T")

CONFIG_FLAG = "--config"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults for every option (also those whose help text is empty) and the description kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "(default" in text or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings or action.required:
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and action.default is not argparse.SUPPRESS:
            action = copy.copy(action)  # argparse prints no help line (so no default) for an option without help
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser with :class:`HelpFormatter`."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def spellings(name: str, *aliases: str) -> list[str]:
    """``--a-b`` and ``--a_b`` of ``name`` and of every alias, without repeats (the first is the one help shows)."""
    out: list[str] = []
    for raw in (name, *aliases):
        bare = raw.lstrip("-")
        out += [f"--{bare.replace('_', '-')}", f"--{bare.replace('-', '_')}"]
    return list(dict.fromkeys(out))


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, *aliases: str,
               **kwargs) -> argparse.Action:
    """An option accepted in both spellings, under ``dest`` ``name`` with underscores."""
    kwargs.setdefault("dest", name.lstrip("-").replace("-", "_"))
    return parser.add_argument(*spellings(name, *aliases), **kwargs)


def read_config_file(path: str | Path) -> tuple[dict, bool]:
    """Settings from a YAML or JSON file, and whether it is a run's record (a ``config.json``, settings under
    ``config``). Keys may use ``-`` or ``_``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path}: cannot be read ({type(err).__name__}: {err})") from err
    recorded = isinstance(data, dict) and isinstance(data.get("config"), dict)
    if recorded:
        data = data["config"]
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of settings (flag name: value)")
    return {str(k).replace("-", "_"): v for k, v in data.items()}, recorded


def _flag_tokens(action: argparse.Action, value: object) -> list[str]:
    """The command-line tokens that give ``action`` the value ``value``."""
    flag = action.option_strings[0]
    if value is None:
        return []
    if isinstance(action, argparse.BooleanOptionalAction):
        negative = next(s for s in action.option_strings if s.startswith("--no-"))
        return [flag if value else negative]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag] if value else []
    if isinstance(value, list | tuple):
        return [flag, *map(str, value)]
    return [f"{flag}={value}"]


def config_file_argv(parser: argparse.ArgumentParser, argv: list[str], ignore: tuple[str, ...] = (),
                     unread: Callable[[dict], set[str]] | None = None) -> list[str]:
    """``argv`` with the settings of its ``--config FILE`` (if any) placed in front as flags, so that flags given on
    the command line win. Keys the parser does not know are refused, naming the file; ``ignore`` keys are dropped,
    and so are, from a run's record, the settings that run did not read (``unread(settings)``): a record holds every
    setting, while a file a person wrote holds what they chose, and a chosen setting is never dropped."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(CONFIG_FLAG)
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return list(argv)
    values, recorded = read_config_file(known.config)
    if recorded and unread is not None:
        values = {k: v for k, v in values.items() if k not in unread(values)}
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    unknown = sorted(k for k in values if k not in actions and k not in ignore)
    if unknown:
        raise ValueError(f"--config {known.config}: unknown setting(s) {unknown}; "
                         "see --help for the names (a flag --a-b is the key a_b)")
    tokens = []
    for key, value in values.items():
        if key not in ignore and key != "config":
            tokens += _flag_tokens(actions[key], value)
    return tokens + list(argv)


def readers_text(readers: list[str]) -> str:
    """``["--loss hill", "--loss splc", "--head cosine"]`` -> ``"--loss hill, splc; --head cosine"``."""
    kinds: dict[str, list[str]] = {}
    for reader in readers:
        kind, _, name = reader.rpartition(" ")
        kinds.setdefault(kind, []).append(name)
    return "; ".join(f"{kind} {', '.join(names)}".strip() for kind, names in kinds.items())


def option_flag(option: Option, readers: list[str]) -> dict:
    """``add_argument`` keywords of a declared option; its help names the components that read it."""
    kwargs: dict = {"help": f"{readers_text(readers)}: {option.help}".replace("%", "%%")}  # argparse formats help
    if option.value_type is bool:
        kwargs["action"] = "store_true"
    else:
        kwargs["type"] = option.value_type
    if option.choices:
        kwargs["choices"] = option.choices
    return kwargs


def call_reporting_errors(work: Callable[[], T], expected: tuple[type[Exception], ...]) -> T | None:
    """``work()``; for an ``expected`` error or an ``OSError`` (described in words: the path and what failed), one
    ``error: ...`` line on stderr and None, the script's cue to exit 2. Any other exception propagates."""
    try:
        return work()
    except expected as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
    return None
