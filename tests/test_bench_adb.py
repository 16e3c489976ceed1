"""bench_adb end to end: the real adb client and server against the stand-in adbd (tests/adbd_standin.py).

The stand-in runs device commands on this host, so the "device" directory is a temporary one
and the stand-in benchmark_model runs the .tflite file with the LiteRT interpreter.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from mobilecls.bench.adb import (
    DeviceError,
    DeviceTimeoutError,
    bench_adb,
    binary_abi,
    device_info,
    parse_cpu_max_freqs,
    parse_devices,
    parse_getprop,
    ready_serials,
)

sys.path.insert(0, os.path.dirname(__file__))
from adbd_standin import adb_server, running_standin, write_benchmark_model, write_script  # noqa: E402

pytestmark = pytest.mark.adb

# A file name that, used unquoted in a device command, creates PWNED two levels above the run
# directory (outside what the clean-up removes), whatever arguments follow it.
EVIL_NAME = "my model; $(cd ..; cd ..; touch PWNED)"


def _require_adb():
    if os.environ.get("ADB") or shutil.which("adb"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("adb is not installed, and CI installs it (apt-get install -y adb)")
    pytest.skip("adb is not installed (apt-get install adb)")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return tmp_path_factory.mktemp("adb")


@pytest.fixture(scope="module")
def server(sandbox):
    """A private adb server; bench_adb's adb calls reach it through ANDROID_ADB_SERVER_PORT."""
    _require_adb()
    with adb_server(str(sandbox / "home")) as adb, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANDROID_ADB_SERVER_PORT", str(adb.port))
        patch.setenv("HOME", adb.env["HOME"])  # a client that had to start a server keeps its key here
        yield adb


@pytest.fixture(scope="module")
def device(server, sandbox):
    with running_standin(str(sandbox / "device"), server=server) as standin:
        yield standin


@pytest.fixture
def device_dir(device):
    path = os.path.join(device.root, "data", "local", "tmp", "mobilecls")
    yield path
    assert not os.path.exists(path), "bench_adb left files on the device"


@pytest.fixture(scope="module")
def host_dir(sandbox):
    path = sandbox / "host"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def tiny_model(host_dir):
    from mobilecls.export.convert import to_tflite
    from mobilecls.models import build_model

    path = host_dir / f"{EVIL_NAME}.tflite"
    path.write_bytes(to_tflite(build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)))
    return str(path)


@pytest.fixture(scope="module")
def fake_model(host_dir):
    """Enough of a .tflite file for runs that fail before anything reads it."""
    path = host_dir / "fake.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(56))
    return str(path)


def _elf(machine, little=True):
    order = "little" if little else "big"
    return (b"\x7fELF" + bytes([2, 1 if little else 2, 1]) + bytes(9) + (2).to_bytes(2, order)
            + machine.to_bytes(2, order) + bytes(44))


def _pwned(*roots):
    return [path for root in roots for path in pathlib.Path(root).rglob("PWNED*")]


def test_bench_over_adb_end_to_end(device, device_dir, tiny_model, host_dir, sandbox):
    binary = write_benchmark_model(str(host_dir))
    try:
        results = bench_adb([tiny_model], serials=[device.serial], threads=(1, 2), binary=binary,
                            op_profiling=True, cpu_mask=1, device_dir=device_dir, num_runs=3, warmup_runs=1,
                            timeout=60)
    finally:  # also when the run failed: an injected command may still have run
        assert not _pwned(sandbox, os.getcwd()), "a model file name was run as shell code"
    assert [(result.model, result.device, result.threads) for result in results] == [
        (tiny_model, device.serial, 1), (tiny_model, device.serial, 2)]
    for result in results:
        assert result.runs == 3
        assert 0 < result.min_ms <= result.mean_ms <= result.max_ms
        assert result.init_ms > 0 and result.first_ms > 0 and result.warmup_ms > 0
        assert result.peak_memory_mb is not None
        assert result.size_bytes == os.path.getsize(tiny_model) and 0 < result.gzip_bytes
        assert result.op_profile and all(ms >= 0 for _, ms in result.op_profile)
        info = result.extra["device_info"]
        assert (info["model"], info["abi"], info["sdk"]) == ("Standin Phone", "x86_64", "34")
        assert result.extra["cpu_mask"] == "1"


def test_device_info_reads_getprop(device):
    info = device_info(device.serial)
    assert info["manufacturer"] == "Mobilecls" and info["soc"] == "SM0000"
    assert info["abilist"] == ["x86_64"] and info["android"] == "14"
    assert isinstance(info["cpu_max_freq_khz"], dict)  # this host may have no cpufreq: then empty


def test_unauthorized_device_is_named(server, sandbox, fake_model, host_dir):
    binary = write_benchmark_model(str(host_dir))
    with running_standin(str(sandbox / "locked"), unauthorized=True, server=server) as locked:
        with pytest.raises(DeviceError, match=rf"{locked.serial}.*unauthorized.*accept"):
            bench_adb(fake_model, serials=[locked.serial], binary=binary)


def test_missing_device_is_named(server, fake_model, host_dir):
    binary = write_benchmark_model(str(host_dir))
    with pytest.raises(DeviceError, match=r"127\.0\.0\.1:1: not found"):
        bench_adb(fake_model, serials=["127.0.0.1:1"], binary=binary)


def test_wrong_abi_binary_is_refused(device, device_dir, fake_model, host_dir):
    binary = host_dir / "arm64_benchmark_model"
    binary.write_bytes(_elf(183))
    with pytest.raises(DeviceError, match=rf"{device.serial}.*arm64-v8a.*x86_64"):
        bench_adb(fake_model, serials=[device.serial], binary=str(binary), device_dir=device_dir)


def test_failing_benchmark_reports_stderr_tail(device, device_dir, fake_model, host_dir):
    binary = write_script(str(host_dir), "failing", 'echo "ERROR: Failed to allocate tensors" >&2\nexit 3')
    with pytest.raises(DeviceError, match=rf"(?s){device.serial}.*status 3.*Failed to allocate tensors"):
        bench_adb(fake_model, serials=[device.serial], binary=binary, device_dir=device_dir)


def test_output_without_timings(device, device_dir, fake_model, host_dir):
    binary = write_script(str(host_dir), "silent", 'echo "INFO: nothing measured"')
    with pytest.raises(DeviceError, match=rf"{device.serial}.*no timing line.*nothing measured"):
        bench_adb(fake_model, serials=[device.serial], binary=binary, device_dir=device_dir)


def test_timeout(device, device_dir, fake_model, host_dir):
    binary = write_script(str(host_dir), "sleeping", "sleep 30")
    started = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match=rf"{device.serial}.*within 1 s"):
        bench_adb(fake_model, serials=[device.serial], binary=binary, device_dir=device_dir, timeout=1)
    assert time.monotonic() - started < 20


def test_failed_push_is_named(device, fake_model, host_dir, tmp_path):
    # The stand-in refuses writes outside its sandbox, and this device_dir leads out of it.
    outside = tmp_path / "outside"
    outside.mkdir()
    link = os.path.join(device.root, "leads-outside")
    os.symlink(outside, link)
    with pytest.raises(DeviceError, match=rf"{device.serial}: adb push .*failed.*outside its sandbox"):
        bench_adb(fake_model, serials=[device.serial], binary=write_benchmark_model(str(host_dir)),
                  device_dir=f"{link}/mobilecls")
    assert not (outside / "mobilecls").exists()


CANNED_OUTPUT = """echo 'INFO: count=2 first=1500 curr=1200 min=1200 max=1500 avg=1350 std=150'
echo 'INFO: count=5 first=1100 curr=1000 min=1000 max=1100 avg=1040 std=40'
echo 'INFO: Inference timings in us: Init: 2000, First inference: 1500, Warmup (avg): 1350, Inference (avg): 1040'"""


def test_every_ready_device_runs(server, device, device_dir, fake_model, host_dir):
    binary = write_script(str(host_dir), "canned", CANNED_OUTPUT)
    # Same sandbox as the first stand-in, so one device_dir is inside both.
    with running_standin(device.root, server=server) as second:
        results = bench_adb(fake_model, binary=binary, device_dir=device_dir)
    assert sorted(result.device for result in results) == sorted([device.serial, second.serial])
    assert all((result.mean_ms, result.runs, result.init_ms) == (1.04, 5, 2.0) for result in results)


def test_standin_benchmark_model_fails_on_missing_graph(host_dir):
    binary = write_benchmark_model(str(host_dir))
    run = subprocess.run([binary, f"--graph={host_dir}/missing.tflite"], capture_output=True, text=True)
    assert run.returncode != 0 and "missing.tflite" in run.stderr


def test_missing_binary_says_where_to_get_it(monkeypatch, fake_model):
    monkeypatch.delenv("MOBILECLS_BENCHMARK_MODEL", raising=False)
    with pytest.raises(FileNotFoundError, match=r"MOBILECLS_BENCHMARK_MODEL.*android_aarch64_benchmark_model"):
        bench_adb(fake_model)


def test_missing_adb_says_how_to_install(monkeypatch, fake_model, host_dir):
    monkeypatch.setenv("ADB", str(host_dir / "no-adb-here"))
    with pytest.raises(FileNotFoundError, match="apt-get install adb"):
        bench_adb(fake_model, binary=write_benchmark_model(str(host_dir)))


def test_binary_abi_from_elf_header(tmp_path):
    cases = {"arm64": (_elf(183), "arm64-v8a"), "arm": (_elf(40), "armeabi-v7a"), "x64": (_elf(62), "x86_64"),
             "x86": (_elf(3), "x86"), "big": (_elf(183, little=False), "arm64-v8a"), "script": (b"#!/bin/sh\n", None)}
    for name, (content, abi) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert binary_abi(tmp_path / name) == abi, name
    (tmp_path / "text").write_bytes(b"not a program at all")
    with pytest.raises(ValueError, match="no ELF header"):
        binary_abi(tmp_path / "text")
    (tmp_path / "riscv").write_bytes(_elf(243))
    with pytest.raises(ValueError, match="machine 243"):
        binary_abi(tmp_path / "riscv")


def test_parse_devices_and_states():
    text = ("* daemon not running; starting now at tcp:5037\nList of devices attached\n"
            "R58M123             device usb:1-1 product:a51 model:SM_A515F device:a51 transport_id:4\n"
            "emulator-5554       offline transport_id:3\n"
            "0123abc             unauthorized usb:1-2 transport_id:5\n"
            "9999                no permissions (user in plugdev group); see [http://x] usb:1-3 transport_id:6\n")
    devices = parse_devices(text)
    assert [(d.serial, d.state) for d in devices] == [
        ("R58M123", "device"), ("emulator-5554", "offline"), ("0123abc", "unauthorized"), ("9999", "no permissions")]
    assert devices[0].attributes["model"] == "SM_A515F"
    assert ready_serials(devices) == ["R58M123"]
    with pytest.raises(DeviceError, match="emulator-5554: is offline"):
        ready_serials(devices, ["R58M123", "emulator-5554"])
    with pytest.raises(DeviceError, match="no adb device connected"):
        ready_serials([])


def test_parse_getprop_and_cpu_freqs():
    assert parse_getprop("[ro.product.model]: [Pixel 7]\n[ro.empty]: []\n") == {
        "ro.product.model": "Pixel 7", "ro.empty": ""}
    text = ("/sys/devices/system/cpu/cpu10/cpufreq/cpuinfo_max_freq 3200000\n"
            "/sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq 1800000\n")
    assert list(parse_cpu_max_freqs(text).items()) == [("cpu2", 1800000), ("cpu10", 3200000)]
