"""README's promises: the Python API example runs as written, and every top-level script's --help works."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT, make_attribute_dataset

README = (ROOT / "README.md").read_text()


def python_api_example() -> str:
    section = README[README.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    """The block as written, with the tiny test backbone instead of TResNet-M so that it takes seconds."""
    csv_path = make_attribute_dataset(tmp_path / "data", n=40, seed=2)
    lines = csv_path.read_text().splitlines()
    split = tmp_path / "data" / "split"
    split.mkdir()
    for name, rows in (("train", lines[1:24]), ("valid", lines[24:32]), ("test", lines[32:])):
        (split / f"{name}.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    code = python_api_example()
    assert 'model_name="tresnet_m"' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"tresnet_m"', '"test_resnet"'), "README.md", "exec"), {})
    assert (tmp_path / "outputs" / "api-run" / "test_report" / "report.json").is_file()


def test_the_package_imports_and_a_script_runs_from_any_folder(tmp_path):
    """No path tricks: the package is installed, so a script started from another working directory finds it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--loss" in result.stdout
