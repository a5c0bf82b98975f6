"""Load pretrained weights from a local file or folder into a model (nothing is downloaded, nothing unpickled).

Accepted files: ``*.safetensors`` (read with the ``safetensors`` library), ``*.pth`` / ``*.pt`` / ``*.bin``
(``torch.load(weights_only=True)``: tensors and plain types only), or a folder in the Hugging Face hub layout
(``model.safetensors`` or ``pytorch_model.bin``, with the ``config.json`` whose ``architecture`` must match the model
and whose ``pretrained_cfg`` says how inputs are normalised; see :func:`pretrained_data_config`).

Accepted layouts of the tensors:

* a timm state dict (``body.conv1.conv.weight`` ...). Its norm weights have BatchNorm semantics (the effective
  scale); for ABN layers they are converted to ``|w| + eps`` semantics with ``w = scale - eps``;
* an original MIIL checkpoint, ``{'model': ...}`` or ``{'state_dict': ...}`` with keys ``body.conv1.0.weight`` /
  ``body.conv1.1.weight`` (conv / InPlaceABN); the names are mapped to timm's and the ABN weights kept as they are;
* this project's own checkpoints (``{'format_version': ..., 'model': ...}``, written by train.py): our layout and
  ABN semantics already, loaded as they are.

The classifier is dropped when its shape differs (another class count); other shape mismatches are errors naming the
first bad key. Missing and unexpected keys are summarised in the log and returned.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

ABN_EPS = 1e-5
_MIIL_RENAMES = [
    (re.compile(r"conv(\d+)\.0\.0\."), r"conv\1.conv."),
    (re.compile(r"conv(\d+)\.0\.1\."), r"conv\1.bn."),
    (re.compile(r"conv(\d+)\.0\."), r"conv\1.conv."),
    (re.compile(r"conv(\d+)\.1\."), r"conv\1.bn."),
    (re.compile(r"downsample\.(\d+)\.0\."), r"downsample.\1.conv."),
    (re.compile(r"downsample\.(\d+)\.1\."), r"downsample.\1.bn."),
]


@dataclass
class LoadReport:
    path: str
    layout: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_classifier: list[str] = field(default_factory=list)


class PretrainedLoadError(RuntimeError):
    pass


HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_file(path: str | Path) -> Path:
    """The weights file of ``path``: the file itself, or the weights of a hub-layout folder."""
    path = Path(path)
    if path.is_dir():
        for name in HUB_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise PretrainedLoadError(f"{path}: a folder without {' or '.join(HUB_WEIGHT_FILES)} (the hub layout)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (see pretrained_weights/README.md)")
    return path


def hub_config(path: str | Path) -> dict | None:
    """The ``config.json`` of a hub-layout folder (None for a plain file or a folder without one)."""
    path = Path(path)
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as err:
        raise PretrainedLoadError(f"{config}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise PretrainedLoadError(f"{config}: expected a JSON object (timm's hub config)")
    return data


def pretrained_data_config(path: str | Path) -> dict | None:
    """The preprocessing of downloaded weights (``pretrained_cfg`` of the hub folder's config.json), or None."""
    config = hub_config(path)
    cfg = (config or {}).get("pretrained_cfg")
    return cfg if isinstance(cfg, dict) else None


def read_weights_file(path: str | Path) -> dict:
    """The tensors of ``path`` (a file or a hub folder), with errors that name the file."""
    path = weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickle with code objects, not a weights file ...
        raise PretrainedLoadError(f"{path}: cannot be read as a weights file ({type(err).__name__}: {err})") from err


def check_architecture(path: str | Path, model_name: str | None) -> None:
    """A hub folder names its architecture; refuse weights of another one before any tensor is compared."""
    declared = (hub_config(path) or {}).get("architecture")
    if declared and model_name and declared.split(".")[0] != model_name.split(".")[0]:
        raise PretrainedLoadError(f"{path}: holds weights of {declared!r} (config.json), not of {model_name!r}")


def unwrap_state_dict(obj: object, path: str | Path = "<weights>") -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedLoadError(f"{path}: expected a state dict of tensors (optionally under 'model' or "
                                  "'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def is_miil_layout(state: dict[str, torch.Tensor]) -> bool:
    """MIIL's TResNet names (``body.conv1.0.weight``); a timm model whose stem is a Sequential (``conv1.0.weight``
    of a ResNet-D) is not one."""
    return (any(k.startswith("body.") and re.search(r"(conv\d+|downsample\.\d+)\.\d", k) for k in state)
            and "body.conv1.conv.weight" not in state)


def miil_to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in _MIIL_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def _backbone_of_wrapper(state: dict, own: dict) -> dict:
    """A checkpoint of ours whose model wraps the timm backbone (per-attribute heads, a ``--head`` module) keeps it
    under ``backbone.``: those weights, for the bare backbone every architecture is built on (heads start new)."""
    if any(key in own for key in state):
        return state
    inner = {key.removeprefix("backbone."): value for key, value in state.items() if key.startswith("backbone.")}
    return inner or state


def load_pretrained(model: nn.Module, path: str | Path, abn_keys: set[str] | frozenset = frozenset(),
                    model_name: str | None = None) -> LoadReport:
    """Load ``path`` into ``model``. ``abn_keys``: state-dict keys of ABN weights (``|w| + eps`` semantics);
    ``model_name``: checked against a hub folder's declared architecture."""
    check_architecture(path, model_name)
    raw = read_weights_file(path)
    state = unwrap_state_dict(raw, path)
    if isinstance(raw, dict) and "format_version" in raw:
        layout = "ours"
    else:
        layout = "miil" if is_miil_layout(state) else "timm"
    if layout == "miil":
        state = miil_to_timm_keys(state)
    elif layout == "timm":
        state = dict(state)
        clamped = 0
        for key in abn_keys & state.keys():
            scale = state[key].float()
            clamped += int((scale < ABN_EPS).sum())
            state[key] = (scale - ABN_EPS).clamp_min(0.0).to(state[key].dtype)
        if clamped:
            log.warning("%s: %d norm scales below eps cannot be expressed as |w|+eps and were clamped", path, clamped)
    own = model.state_dict()
    if layout == "ours":
        state = _backbone_of_wrapper(state, own)
    classifier = {f"{name}.{p}" for name, m in model.named_modules() if m is _classifier(model)
                  for p in ("weight", "bias")}
    report = LoadReport(str(path), layout, 0)
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape:
            if key in classifier:
                report.dropped_classifier.append(key)
            else:
                raise PretrainedLoadError(f"{path}: key {key!r} has shape {tuple(value.shape)} in the file but "
                                          f"{tuple(own[key].shape)} in the model (is it another architecture?)")
        else:
            usable[key] = value
    if not usable:
        first = next(iter(state))
        raise PretrainedLoadError(f"{path}: no key matches the model (first key in the file: {first!r}); "
                                  "is it another architecture?")
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    report.missing = [k for k in own if k not in usable and k not in report.dropped_classifier
                      and not k.endswith("num_batches_tracked")]
    log.info("loaded %d tensors from %s (%s layout); missing %d %s; unexpected %d %s; classifier dropped: %s",
             report.loaded, path, layout, len(report.missing), report.missing[:5], len(report.unexpected),
             report.unexpected[:5], bool(report.dropped_classifier))
    return report


def _classifier(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_classifier", None)
    return get() if callable(get) else None
