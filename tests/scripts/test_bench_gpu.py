"""`samroto bench gpu` dry run on the CPU: every step runs or is recorded as failed, the report is
written and the table printed (the same command proves the GPU path on a CUDA machine)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from samroto.scripts import bench_gpu


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_gpu.add_arguments(parser)
    return parser.parse_args(["--device", "cpu", "--small", "--out", str(tmp_path / "report.json"), *extra])


def test_cpu_dry_run_writes_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-sam2-here"
    code = bench_gpu.run(_args(tmp_path, "--steps", "environment,parity,speed,long,plates,official",
                               "--official-src", str(missing)))
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    steps = report["steps"]
    assert report["device"] == "cpu" and report["precision"] == "float32"
    assert steps["environment"]["status"] == "ok" and steps["environment"]["torch"]
    parity = steps["parity"]
    assert parity["status"] == "ok", parity.get("error")
    assert parity["max_abs_diff"] <= 1e-3 and parity["scenario_sam2.1"]["outputs"] > 20
    speed = steps["speed"]
    assert speed["status"] == "ok", speed.get("error")
    for objects in (1, 2):
        figures = speed[f"micro/{objects}obj"]
        assert figures["frames"] == 3 and figures["s_per_frame"] > 0 and figures["model_ms"] > 0
    assert steps["long"]["status"] == "ok" and steps["long"]["frames"] == 4
    assert steps["plates"]["status"] == "ok" and steps["plates"]["8K"]["finite"]
    # a step that cannot run is recorded, and the others still report
    assert steps["official"]["status"] == "failed" and "not a checkout" in steps["official"]["error"]
    table = capsys.readouterr().out
    assert "parity" in table and "FAILED" in table and "micro/2obj.s_per_frame" in table


def test_bad_device_and_unknown_step_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _args(tmp_path)
    args.device = "cuda:7"
    assert bench_gpu.run(args) == 2
    assert "cuda:7" in capsys.readouterr().err
    assert bench_gpu.run(_args(tmp_path, "--steps", "environment,warp")) == 2
    assert "unknown steps warp" in capsys.readouterr().err
