"""`--device` and `--precision` on the command line: auto resolves, mistakes are one line (exit 2)."""

from __future__ import annotations

import argparse

import pytest

from samroto.scripts.common import resolve_device, resolve_precision


def test_auto_and_cpu_resolve() -> None:
    assert resolve_device("auto") == "cpu"  # no GPU on the test machines
    assert resolve_device(None) == "cpu"
    assert resolve_precision(argparse.Namespace(precision=None), "cpu") == "float32"


@pytest.mark.parametrize(("device", "message"), [("cuda:3", "--device cuda:3: torch sees no CUDA device"),
                                                  ("mps", "Metal backend is not available"),
                                                  ("gpu", "unknown device 'gpu'")])
def test_a_device_the_machine_lacks_is_one_line(device: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        resolve_device(device)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_precision_the_device_cannot_run_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        resolve_precision(argparse.Namespace(precision="float16"), "cpu")
    assert info.value.code == 2 and "cpu runs float32 or bfloat16, not float16" in capsys.readouterr().err
