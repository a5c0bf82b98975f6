"""benchmarks/cuda_suite.py on the CPU (--quick): every section runs or says why not, one failing section keeps the
others' numbers, the deadline skips what would not fit, and the tables come back as JSON and Markdown."""

from __future__ import annotations

import importlib
import json
import math
import re
import time
from pathlib import Path

import cuda_suite  # benchmarks/ is on the test path (conftest)
import pytest
import torch
from conftest import ROOT, make_attribute_dataset

from partial_csl.layers.abn import inplace_abn_available


@pytest.fixture
def attribute_folder(tmp_path):
    make_attribute_dataset(tmp_path / "data", n=40, seed=0)
    return tmp_path / "data"


def in_process(args: list, log: Path, timeout: float) -> float:
    """cuda_suite.run_script without the child process: the script's main() here (a child spends ~8 s importing)."""
    script, *argv = args
    module = importlib.import_module(Path(script).stem)
    start = time.perf_counter()
    assert module.main([str(a) for a in argv]) == 0, script
    return time.perf_counter() - start


def test_quick_suite_runs_every_cpu_section_and_marks_the_cuda_ones_skipped(attribute_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cuda_suite, "run_script", in_process)  # run_script itself: the test after the next
    out = tmp_path / "cuda"
    results = cuda_suite.main(["--quick", "--data", str(attribute_folder), "--out", str(out)])
    sections = results["sections"]
    assert list(sections) == list(cuda_suite.SECTIONS)
    assert {name: s["status"] for name, s in sections.items()} == {
        "abn": "ok", "precision": "ok", "end_to_end": "ok", "inference": "ok", "ddp": "skipped", "compile": "skipped"}
    assert sections["ddp"]["reason"] == "NCCL DDP needs CUDA (device cpu)"
    assert sections["compile"]["reason"] == cuda_suite.NO_COMPILE
    # the same weights fit timm's TResNet, the pure-PyTorch ABN and (where the package builds, as in CI) the
    # InPlace-ABN kernels, and each gives the CPU reference's numbers
    backends = ["timm", "torch"] + (["inplace_abn"] if inplace_abn_available() else [])
    assert cuda_suite.abn_backends() == backends
    assert {row["backend"]: row["equal (< 1e-3)"] for row in sections["abn"]["parity"]} == dict.fromkeys(backends, True)
    speed = sections["abn"]["speed"]
    assert {row["backend"] for row in speed} == set(backends)
    assert all(row["train img/s"] > 0 and row["largest batch in 16 GiB"] == "n/a (CPU)" for row in speed)
    precision = {row["precision"]: row for row in sections["precision"]["runs"]}
    assert set(precision) == {"float32", "bfloat16"} and "float16 + GradScaler: CUDA only" in sections["precision"][
        "notes"]
    assert precision["float32"]["max |loss - float32|"] == 0 and precision["bfloat16"]["non-finite losses"] == 0
    assert len(sections["precision"]["loss_curves"]["bfloat16"]) == cuda_suite.QUICK["precision_steps"]
    assert [row["step"] for row in sections["end_to_end"]["runs"]] == ["split", "train.py", "validate.py", "infer.py"]
    assert 0 <= sections["end_to_end"]["test mAP"] <= 100
    runtimes = {row["runtime"]: row for row in sections["inference"]["runs"]}
    assert runtimes["ONNX Runtime (CPUExecutionProvider), float32"]["max |prob - eager|"] < 1e-4
    assert json.loads((out / "results.json").read_text())["sections"]["ddp"]["status"] == "skipped"
    table = (out / "table.md").read_text()
    assert "## ddp (skipped: NCCL DDP needs CUDA (device cpu); 0 s)" in table
    assert "| ONNX Runtime (CPUExecutionProvider), float32 |" in table


def test_a_script_runs_as_a_user_would_and_its_failure_names_the_exit_code_and_the_log_tail(tmp_path):
    script = tmp_path / "step.py"
    script.write_text("import os, sys\nprint(os.getcwd())\nprint('src' in os.environ['PYTHONPATH'])\n"
                      "sys.exit(int(sys.argv[1]))\n")
    assert cuda_suite.run_script([script, 0], tmp_path / "ok.log", 60) > 0
    assert (tmp_path / "ok.log").read_text().split() == [str(ROOT), "True"]
    with pytest.raises(RuntimeError, match=rf"step.py exited with 3: {re.escape(str(ROOT))} \| True$"):
        cuda_suite.run_script([script, 3], tmp_path / "failed.log", 60)


def test_a_failing_section_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    def broken(suite):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(cuda_suite.SECTIONS, "abn", cuda_suite.Section(broken, gpu_seconds=1))
    results = cuda_suite.main(["--quick", "--sections", "abn", "ddp", "--out", str(tmp_path)])
    abn = results["sections"]["abn"]
    assert abn["status"] == "failed" and abn["reason"] == "RuntimeError: kernel exploded"
    assert "Traceback" in abn["traceback"] and results["sections"]["ddp"]["status"] == "skipped"
    assert "## abn (failed: RuntimeError: kernel exploded;" in (tmp_path / "table.md").read_text()


def test_a_section_starts_only_if_its_gpu_estimate_fits_the_deadline(tmp_path, monkeypatch):
    suite = cuda_suite.Suite(torch.device("cuda"), cuda_suite.FULL, None, tmp_path, 16, time.monotonic() + 60)
    result = cuda_suite.run_section(suite, "end_to_end")
    assert result == {"status": "skipped", "reason": "would not end before --deadline-s (about 90 s on a GPU)",
                      "seconds": 0.0}


def test_past_the_deadline_no_section_starts(tmp_path):
    results = cuda_suite.main(["--quick", "--deadline-s", "0", "--sections", "precision", "--out", str(tmp_path)])
    assert results["sections"]["precision"] == {"status": "skipped", "reason": "past --deadline-s", "seconds": 0.0}


def test_compile_rows_measure_the_first_call_and_the_steady_step(monkeypatch):
    """The compile section's bookkeeping (Inductor itself only runs without --quick: minutes of C++ on a CPU)."""
    monkeypatch.setattr(torch, "compile", lambda model: model)
    suite = cuda_suite.Suite(torch.device("cpu"), {**cuda_suite.QUICK, "compile": True}, None, ROOT, 16, math.inf)
    result = cuda_suite.compile_section(suite)
    assert [row["mode"] for row in result["runs"]] == ["eager", "torch.compile"]
    assert result["runs"][1]["speed-up"] == pytest.approx(
        result["runs"][0]["step ms after warm-up"] / result["runs"][1]["step ms after warm-up"])
    assert all(row["first step s"] > 0 and row["train img/s"] > 0 for row in result["runs"])


def test_largest_batch_follows_the_line_through_two_peaks(monkeypatch):
    peaks = {8: 1000 + 8 * 100, 16: 1000 + 16 * 100}  # fixed 1000 bytes plus 100 per image

    def peak(model, batch, size, device):
        return peaks.get(batch, 1000 + batch * 100)

    monkeypatch.setattr(cuda_suite, "peak_training_memory", peak)
    assert cuda_suite.largest_batch(None, 224, 16, 1000 + 50 * 100, torch.device("cpu")) == "50 (0.0 GiB)"
    assert cuda_suite.largest_batch(None, 224, 16, 500, torch.device("cpu")) == "0"


def test_the_float16_run_goes_through_the_grad_scaler():
    """The CUDA-only precision row's code path, on the CPU (autocast and GradScaler take float16 there too)."""
    suite = cuda_suite.Suite(torch.device("cpu"), cuda_suite.QUICK, None, ROOT, 16, math.inf)
    curve, skipped, seconds = cuda_suite.precision_run(suite, torch.float16)
    reference, _, _ = cuda_suite.precision_run(suite, None)
    assert len(curve) == len(reference) == cuda_suite.QUICK["precision_steps"] and seconds > 0
    assert all(math.isfinite(v) for v in curve) and 0 <= skipped <= len(curve)
    assert abs(curve[0] - reference[0]) < 0.05  # the same weights and batch: float16 rounding apart
