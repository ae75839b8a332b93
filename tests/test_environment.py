"""Environment capture: the CPU's model and governor, each GPU's name, driver and memory (with fakes: there is
no GPU and no Mac here), and the report's environment section that shows them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tfbench.benchmarks import devices as devices_module
from tfbench.benchmarks.devices import Device
from tfbench.benchmarks.environment import capture, cpu_governor, gpu_info, nvidia_smi_gpus
from tfbench.benchmarks.results import validate
from tfbench.reports.data import load_results
from tfbench.reports.markdown import to_markdown

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMI_OUTPUT = ("0, NVIDIA A100-SXM4-40GB, 535.104.05, 40960\n"
              "1, NVIDIA A100-SXM4-40GB, 535.104.05, 40960\n"
              "2, Tesla T4, 535.104.05, 15360\n"
              "3, Tesla T4, 535.104.05, [N/A]\n")


def fake_run(outputs: dict):
    """subprocess.run for the commands in ``outputs`` (program name -> stdout); any other is not installed."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if command[0] not in outputs:
            raise FileNotFoundError(command[0])
        return subprocess.CompletedProcess(command, 0, stdout=outputs[command[0]], stderr="")
    run.calls = calls
    return run


def gpu(index: int, name: str, **details) -> Device:
    return Device(f"gpu:{index}", "gpu", f"/GPU:{index}", name, details)


# --- the CPU ------------------------------------------------------------------------------------------------


def test_cpu_model_comes_from_py_cpuinfo_where_the_platform_says_only_arm(monkeypatch):
    # A Mac: platform.processor() is "arm" and there is no /proc/cpuinfo; py-cpuinfo reads sysctl.
    monkeypatch.setitem(sys.modules, "cpuinfo", SimpleNamespace(get_cpu_info=lambda: {"brand_raw": "Apple  M1 Pro"}))
    monkeypatch.setattr(devices_module._platform, "processor", lambda: "arm")
    assert devices_module.cpu_model.__wrapped__() == "Apple M1 Pro"


def test_cpu_model_falls_back_to_the_os_when_py_cpuinfo_fails(monkeypatch):
    def broken():
        raise RuntimeError("cpuid unavailable")

    monkeypatch.setitem(sys.modules, "cpuinfo", SimpleNamespace(get_cpu_info=broken))
    monkeypatch.setattr(devices_module, "Path", lambda path: FIXTURES / "no-such-cpuinfo")
    monkeypatch.setattr(devices_module._platform, "processor", lambda: "")
    monkeypatch.setattr(devices_module._platform, "machine", lambda: "arm64")
    assert devices_module.cpu_model.__wrapped__() == "arm64"


def _governors(root: Path, governors: dict[int, str]) -> Path:
    for cpu, governor in governors.items():
        (root / f"cpu{cpu}" / "cpufreq").mkdir(parents=True)
        (root / f"cpu{cpu}" / "cpufreq" / "scaling_governor").write_text(governor + "\n")
    (root / "cpufreq").mkdir(exist_ok=True)  # Linux's policy folder beside the cpus: not a cpu
    return root


def test_cpu_governor_where_linux_exposes_it(tmp_path):
    assert cpu_governor(_governors(tmp_path / "same", {0: "performance", 1: "performance"})) == "performance"
    mixed = _governors(tmp_path / "mixed", {0: "powersave", 1: "powersave", 2: "performance", 10: "powersave"})
    assert cpu_governor(mixed) == "powersave (cpu0-1), performance (cpu2), powersave (cpu10)"
    (tmp_path / "none" / "cpu0").mkdir(parents=True)  # a VM or container: no cpufreq folder
    assert cpu_governor(tmp_path / "none") is None


# --- GPUs ---------------------------------------------------------------------------------------------------


def test_nvidia_smi_gives_name_driver_and_memory():
    run = fake_run({"nvidia-smi": SMI_OUTPUT})
    gpus = nvidia_smi_gpus(run)
    assert gpus[0] == {"index": 0, "name": "NVIDIA A100-SXM4-40GB", "driver": "535.104.05",
                       "memory_bytes": 40960 * 2**20}
    assert gpus[3]["memory_bytes"] is None  # "[N/A]"
    assert "--query-gpu=index,name,driver_version,memory.total" in run.calls[0]
    assert nvidia_smi_gpus(fake_run({})) == []  # no nvidia-smi: no facts, no error


def test_each_cuda_gpu_is_matched_to_its_nvidia_smi_row_through_cuda_visible_devices():
    run = fake_run({"nvidia-smi": SMI_OUTPUT})
    # TensorFlow sees GPUs 2 and 3 of the machine as /GPU:0 and /GPU:1.
    info = gpu_info([Device("cpu", "cpu", "/CPU:0", "AMD EPYC"), gpu(0, "Tesla T4", compute_capability=(7, 5)),
                     gpu(1, "Tesla T4")], run=run, environ={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert info == [
        {"index": 0, "name": "Tesla T4", "driver": "535.104.05", "memory_bytes": 15360 * 2**20,
         "compute_capability": "7.5", "source": "nvidia-smi"},
        {"index": 1, "name": "Tesla T4", "driver": "535.104.05", "memory_bytes": None,
         "compute_capability": None, "source": "nvidia-smi"},
    ]
    # Without CUDA_VISIBLE_DEVICES the order is the same, and the name must agree: else the first unused
    # row of that name.
    info = gpu_info([gpu(0, "NVIDIA A100-SXM4-40GB"), gpu(1, "Tesla T4")], run=run, environ={})
    assert [(g["name"], g["memory_bytes"]) for g in info] == [("NVIDIA A100-SXM4-40GB", 40960 * 2**20),
                                                              ("Tesla T4", 15360 * 2**20)]


def test_without_nvidia_smi_a_gpu_keeps_what_tensorflow_says():
    info = gpu_info([gpu(0, "NVIDIA H100 80GB HBM3", compute_capability=(9, 0))], run=fake_run({}), environ={})
    assert info == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": None, "memory_bytes": None,
                     "compute_capability": "9.0", "source": "tensorflow"}]


def test_an_apple_gpu_reports_the_unified_memory_it_shares():
    run = fake_run({"sysctl": "17179869184\n"})
    metal = Device("metal:0", "metal", "/GPU:0", "Apple M1 Pro", {"tensorflow_metal": "1.2.0"})
    [info] = gpu_info([metal], run=run, environ={})
    assert info["name"] == "Apple M1 Pro" and info["memory_bytes"] == 16 * 2**30
    assert run.calls == [["sysctl", "-n", "hw.memsize"]]  # nvidia-smi is not asked about an Apple GPU


def test_the_captured_environment_conforms_to_the_results_schema(monkeypatch):
    from tfbench.benchmarks import environment

    monkeypatch.setattr(environment, "gpu_info", lambda devices: gpu_info(
        devices, run=fake_run({"nvidia-smi": SMI_OUTPUT}), environ={}))
    monkeypatch.setattr(environment, "cpu_governor", lambda: "performance")
    build = {"cuda_version": "12.5", "is_cuda_build": True, "cuda_compute_capabilities": ["sm_80"]}
    tf = SimpleNamespace(__version__="2.99.0", sysconfig=SimpleNamespace(get_build_info=lambda: build))
    devices = [Device("cpu", "cpu", "/CPU:0", "AMD EPYC"), gpu(0, "NVIDIA A100-SXM4-40GB")]
    environment_doc = capture(tf, devices, {"intra_op": 2, "inter_op": 2})
    assert environment_doc["cpu_governor"] == "performance"
    assert environment_doc["gpu_info"][0]["driver"] == "535.104.05"
    validate({"schema_version": 1, "environment": environment_doc, "records": []}, "captured")


# --- the report ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_details", [True, False], ids=["new-file", "older-file"])
def test_the_report_shows_the_governor_and_each_gpu_s_driver_and_memory(tmp_path, with_details):
    document = json.loads((FIXTURES / "results_gpu.json").read_text())
    if with_details:
        document["environment"].update(cpu_governor="performance", gpu_info=[
            {"index": 0, "name": "NVIDIA A100-SXM4-40GB", "driver": "535.104.05", "memory_bytes": 40 * 2**30,
             "compute_capability": "8.0", "source": "nvidia-smi"}])
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(document))
    environment = to_markdown(load_results(path)).split("## Environment", 1)[1].split("\n## ", 1)[0]
    rows = {cells[0]: cells[1] for line in environment.splitlines() if line.startswith("| ")
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]}
    if with_details:
        assert rows["CPU governor"] == "performance"
        assert rows["GPUs"] == "NVIDIA A100-SXM4-40GB (driver 535.104.05, 40 GiB, compute 8.0)"
    else:  # an older file: what it has, and a dash for what it does not
        assert rows["CPU governor"] == "—"
        assert rows["GPUs"] == ", ".join(document["environment"]["gpus"])
