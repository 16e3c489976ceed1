"""Latency of .tflite files on Android devices: TFLite's ``benchmark_model`` run over adb.

Everything goes through the real ``adb`` executable (``$ADB`` or PATH), so whatever adb can
reach (USB, ``adb connect`` over Wi-Fi/TCP, emulators) can be benchmarked. Per device the
binary and the models are pushed into a fresh run directory under ``device_dir``, every model
runs with every thread count, and the run directory is removed afterwards, also on errors.
Devices run in parallel, one thread each.

Every argument of the device shell command is quoted with ``shlex.quote``: a model file named
``a b; rm -rf x.tflite`` is one argument on the device, never shell syntax.
"""

import concurrent.futures
import dataclasses
import numbers
import os
import re
import secrets
import shlex
import shutil
import subprocess

from mobilecls.bench.parse import parse_benchmark_output
from mobilecls.bench.result import BenchResult
from mobilecls.files import gzip_size, read_tflite

BINARY_ENV = "MOBILECLS_BENCHMARK_MODEL"
DEFAULT_DEVICE_DIR = "/data/local/tmp/mobilecls"
# ELF e_machine -> Android ABI.
ELF_ABIS = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
# Official prebuilt benchmark_model names per ABI (TensorFlow Lite "Performance measurement" docs).
_PREBUILT = {"arm64-v8a": "android_aarch64_benchmark_model", "armeabi-v7a": "android_arm_benchmark_model",
             "x86_64": "android_x86_64_benchmark_model", "x86": "android_x86_benchmark_model"}
# Appended to every device command: the exit status of the command even through old devices
# whose adb shell (no shell protocol v2) always exits 0, and proof that the command ran at all.
_EXIT_MARK = "mobilecls-exit:"
_STATE_HINTS = {
    "unauthorized": "is unauthorized: unlock it and accept the 'Allow USB debugging?' prompt (RSA key), then retry",
    "offline": "is offline: reconnect it (cable, or `adb reconnect` / `adb connect` again), then retry",
    "no permissions": "has no permissions: the USB device node is not accessible (udev rules / plugdev group)",
}


class DeviceError(RuntimeError):
    """An adb device could not be used or a benchmark on it failed; ``serial`` names the device."""

    def __init__(self, serial, message):
        super().__init__(f"device {serial}: {message}" if serial else message)
        self.serial = serial


class DeviceTimeoutError(DeviceError, TimeoutError):
    """A command on a device did not finish within its timeout."""


@dataclasses.dataclass(frozen=True)
class Device:
    """One line of ``adb devices -l``: serial, state and the key:value attributes after them."""

    serial: str
    state: str  # device, unauthorized, offline, no permissions, recovery, ...
    attributes: dict = dataclasses.field(default_factory=dict, hash=False)


def adb_executable():
    """Path of the adb executable: ``$ADB``, else ``adb`` on PATH.

    Raises:
        FileNotFoundError: neither exists.
    """
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb or not os.path.isfile(adb):
        raise FileNotFoundError(f"adb executable not found ({'$ADB=' + adb if adb else 'not on PATH'}); install "
                                "Android SDK platform-tools or `apt-get install adb`, or set $ADB to its path")
    return adb


def _adb(args, serial=None, timeout=60):
    """Run adb with ``args`` (optionally ``-s serial``); the CompletedProcess with text output."""
    command = [adb_executable(), *(["-s", serial] if serial else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceTimeoutError(serial, f"`adb {' '.join(args[:1])}` did not finish within {timeout} s") from None
    return subprocess.CompletedProcess(command, result.returncode,
                                       result.stdout.decode("utf-8", "replace").replace("\r\n", "\n"),
                                       result.stderr.decode("utf-8", "replace").replace("\r\n", "\n"))


def _tail(text, lines=8):
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"


def parse_devices(text):
    """The devices in ``adb devices -l`` output (header and daemon start-up lines skipped)."""
    devices = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb ")):
            continue
        serial, rest = (*line.split(None, 1), "")[:2]
        rest = rest.strip()
        # "no permissions (...)" is the one state with spaces; the rest are single words.
        state = "no permissions" if rest.startswith("no permissions") else rest.split(" ", 1)[0]
        tokens = rest[len(state):].split()
        attributes = dict(token.split(":", 1) for token in tokens if re.fullmatch(r"\w+:\S*", token))
        if serial and state:
            devices.append(Device(serial, state, attributes))
    return devices


def list_devices():
    """The devices the adb server knows, from ``adb devices -l`` (starting the server if needed).

    Raises:
        FileNotFoundError: no adb executable.
        DeviceError: adb itself failed.
    """
    result = _adb(["devices", "-l"])
    if result.returncode != 0:
        raise DeviceError(None, f"`adb devices -l` failed (exit {result.returncode}): {_tail(result.stderr)}")
    return parse_devices(result.stdout)


def ready_serials(devices, serials=None):
    """The serials to benchmark: ``serials`` checked against ``devices``, or every ready device.

    Raises:
        DeviceError: no device at all, a requested serial is not attached, or one is not in the
            "device" state (unauthorized, offline, ...); the message names the serial and what to do.
    """
    states = {device.serial: device.state for device in devices}
    attached = ", ".join(f"{serial} ({state})" for serial, state in states.items()) or "none"
    if serials is None:
        if not devices:
            raise DeviceError(None, "no adb device connected: plug one in with USB debugging on (or `adb connect "
                                    "HOST:PORT`) and check `adb devices`")
        # None ready: go on with the first one, so the error below says what is wrong with it.
        serials = [device.serial for device in devices if device.state == "device"] or [devices[0].serial]
    serials = [serials] if isinstance(serials, str) else list(serials)
    if not serials:
        raise DeviceError(None, "serials is empty; pass None to use every connected device")
    for serial in serials:
        if serial not in states:
            raise DeviceError(serial, f"not found; attached devices: {attached}")
        if states[serial] != "device":
            hint = _STATE_HINTS.get(states[serial], f"is in state {states[serial]!r}, expected 'device'")
            raise DeviceError(serial, hint)
    return serials


def _shell(serial, command, timeout=60):
    """Run ``command`` (already quoted) in the device shell: (exit status, stdout, stderr).

    Raises:
        DeviceError: adb could not run it (device gone, unauthorized, ...).
        DeviceTimeoutError: it did not finish within ``timeout`` seconds.
    """
    result = _adb(["shell", f"{command}; printf '\\n{_EXIT_MARK}%s\\n' \"$?\""], serial, timeout)
    found = list(re.finditer(rf"\n?{_EXIT_MARK}(\d+)\n?", result.stdout))
    if not found:
        raise DeviceError(serial, f"adb shell failed (exit {result.returncode}): "
                                  f"{_tail(result.stderr + result.stdout)}")
    mark = found[-1]
    return int(mark.group(1)), result.stdout[:mark.start()] + result.stdout[mark.end():], result.stderr


def parse_getprop(text):
    """``getprop`` listing lines ``[name]: [value]`` as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$", text, re.MULTILINE))


def parse_cpu_max_freqs(text):
    """``PATH/cpuN/cpufreq/cpuinfo_max_freq VALUE`` lines as {"cpuN": kHz}, in CPU order."""
    found = re.findall(r"/(cpu\d+)/cpufreq/cpuinfo_max_freq\s+(\d+)\s*$", text, re.MULTILINE)
    return dict(sorted(((cpu, int(khz)) for cpu, khz in found), key=lambda item: int(item[0][3:])))


_CPU_FREQS = ("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
              "[ -r \"$f\" ] && echo \"$f $(cat \"$f\")\"; done 2>/dev/null")


def device_info(serial, timeout=60):
    """What a device is: model, SoC, ABIs, Android version (getprop) and per-CPU max clocks.

    CPUs whose cpufreq files are missing or unreadable are left out of ``cpu_max_freq_khz``.

    Raises:
        DeviceError: the device cannot be reached.
    """
    _, listing, _ = _shell(serial, f"getprop; echo '--- cpufreq'; {_CPU_FREQS}", timeout)
    props_text, _, freqs_text = listing.partition("--- cpufreq")
    props = parse_getprop(props_text)
    abi = props.get("ro.product.cpu.abi", "")
    abilist = [name for name in props.get("ro.product.cpu.abilist", "").split(",") if name] or (
        [abi] if abi else [])
    return {"serial": serial, "manufacturer": props.get("ro.product.manufacturer"),
            "model": props.get("ro.product.model"), "board_platform": props.get("ro.board.platform"),
            "soc": props.get("ro.soc.model") or props.get("ro.board.platform"), "abi": abi or None,
            "abilist": abilist, "android": props.get("ro.build.version.release"),
            "sdk": props.get("ro.build.version.sdk"), "cpu_max_freq_khz": parse_cpu_max_freqs(freqs_text)}


def binary_abi(path):
    """The Android ABI a benchmark binary is built for, from its ELF header; None for a "#!" script.

    Raises:
        ValueError: the file is neither ELF nor a script, or its ELF machine is not an Android ABI.
    """
    with open(path, "rb") as handle:
        header = handle.read(20)
    if header.startswith(b"#!"):
        return None  # scripts run on any ABI (the test suite's stand-in benchmark_model is one)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an executable for Android: no ELF header (expected the TFLite "
                         "benchmark_model binary)")
    machine = int.from_bytes(header[18:20], "big" if header[5] == 2 else "little")
    if machine not in ELF_ABIS:
        raise ValueError(f"{path} is an ELF file for machine {machine}, not an Android ABI "
                         f"({', '.join(ELF_ABIS.values())})")
    return ELF_ABIS[machine]


def _find_binary(binary):
    path = os.fspath(binary) if binary is not None else os.environ.get(BINARY_ENV)
    where = ("Get the official TFLite benchmark_model for the device's ABI: the TensorFlow Lite 'Performance "
             "measurement' docs list prebuilt nightly binaries (" + ", ".join(
                 f"{name} for {abi}" for abi, name in _PREBUILT.items()) + "), or build "
             "//tensorflow/lite/tools/benchmark:benchmark_model with bazel --config=android_arm64")
    if not path:
        raise FileNotFoundError(f"no benchmark_model binary: pass --benchmark-binary PATH or set ${BINARY_ENV}. "
                                f"{where}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"benchmark_model binary not found: {path}. {where}")
    return path


def _check_abi(serial, binary, abi, info):
    if abi is None or not info["abilist"] or abi in info["abilist"]:
        return
    wanted = info["abilist"][0]
    raise DeviceError(serial, f"{binary} is built for {abi} but the device runs {', '.join(info['abilist'])}; "
                              f"use the {wanted} benchmark_model ({_PREBUILT.get(wanted, 'benchmark_model')})")


def _cpu_mask_hex(cpu_mask):
    if cpu_mask is None:
        return None
    try:
        mask = int(cpu_mask, 16) if isinstance(cpu_mask, str) else int(cpu_mask)
    except (TypeError, ValueError):
        mask = 0
    if mask <= 0:
        raise ValueError(f"cpu_mask must be a positive CPU bit mask (int or hex string like 'f0'), got {cpu_mask!r}")
    return f"{mask:x}"


def _read_models(models):
    paths = [os.fspath(path) for path in ([models] if isinstance(models, str | os.PathLike) else models)]
    if not paths:
        raise ValueError("models must name at least one .tflite file, got none")
    return paths, [read_tflite(path) for path in paths]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything one device's run needs, the same for every device."""

    binary: str
    abi: str | None
    models: list
    sizes: list            # (size, gzip size) per model
    threads: tuple
    flags: tuple           # benchmark_model flags other than --graph and --num_threads
    cpu_mask: str | None
    timeout: float
    device_dir: str


def bench_adb(models, serials=None, threads=(1,), binary=None, use_xnnpack=True, use_gpu=False,
              op_profiling=False, peak_memory=True, cpu_mask=None, timeout=300,
              device_dir=DEFAULT_DEVICE_DIR, num_runs=None, warmup_runs=None):
    """Benchmark .tflite files with TFLite's benchmark_model on adb devices.

    Args:
        models: .tflite file paths (or one path).
        serials: adb serials; None for every connected device in the "device" state.
        threads: benchmark_model ``--num_threads`` values (or one), each >= 1.
        binary: the benchmark_model executable for the devices' ABI; default ``$MOBILECLS_BENCHMARK_MODEL``.
        use_xnnpack: ``--use_xnnpack`` (the CPU delegate).
        use_gpu: ``--use_gpu`` (the GPU delegate).
        op_profiling: ``--enable_op_profiling``; per-op-type times land in ``op_profile``.
        peak_memory: ``--report_peak_memory_footprint``.
        cpu_mask: run under ``taskset MASK`` (int, or hex string like "f0" for CPUs 4-7).
        timeout: seconds each adb step (a push, one benchmark run) may take.
        device_dir: device directory for the files; each call works in a fresh subdirectory that
            is removed afterwards (and ``device_dir`` itself when that leaves it empty).
        num_runs: ``--num_runs`` (benchmark_model's default when None).
        warmup_runs: ``--warmup_runs`` (benchmark_model's default when None).

    Returns:
        BenchResults, devices in ``serials`` order, then models, then thread counts; ``device``
        is the serial, ``extra["device_info"]`` what ``device_info`` says.

    Raises:
        FileNotFoundError: no adb, no benchmark binary, or a model file is missing.
        ValueError: a bad argument, a model that is not TFLite, a binary that is not ELF.
        DeviceError: no device, a device that is not usable (unauthorized, offline, wrong ABI),
            a failed push, benchmark_model failing or printing no timings; the message names
            the device. DeviceTimeoutError (also a TimeoutError) when a step timed out.
    """
    paths, contents = _read_models(models)
    threads = (threads,) if isinstance(threads, numbers.Integral) else tuple(threads)
    if not threads or any(not isinstance(count, numbers.Integral) or count < 1 for count in threads):
        raise ValueError(f"threads must be integers >= 1, got {threads!r}")
    for name, value in (("num_runs", num_runs), ("warmup_runs", warmup_runs)):
        if value is not None and (not isinstance(value, numbers.Integral) or value < 0):
            raise ValueError(f"{name} must be an integer >= 0 or None, got {value!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not device_dir.startswith("/") or device_dir.rstrip("/") == "":
        raise ValueError(f"device_dir must be an absolute directory other than /, got {device_dir!r}")
    binary_path = _find_binary(binary)
    flags = [f"--use_xnnpack={str(bool(use_xnnpack)).lower()}", f"--use_gpu={str(bool(use_gpu)).lower()}"]
    flags += ["--enable_op_profiling=true"] if op_profiling else []
    flags += ["--report_peak_memory_footprint=true"] if peak_memory else []
    flags += [f"--num_runs={num_runs}"] if num_runs is not None else []
    flags += [f"--warmup_runs={warmup_runs}"] if warmup_runs is not None else []
    plan = _Plan(binary_path, binary_abi(binary_path), paths,
                 [(len(content), gzip_size(content)) for content in contents],
                 threads, tuple(flags), _cpu_mask_hex(cpu_mask), timeout, device_dir.rstrip("/"))
    serials = ready_serials(list_devices(), serials)
    with concurrent.futures.ThreadPoolExecutor(len(serials)) as pool:
        futures = [pool.submit(_bench_device, serial, plan) for serial in serials]
        concurrent.futures.wait(futures)
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        for other in errors[1:]:
            errors[0].add_note(f"also: {other}")
        raise errors[0]
    return [result for future in futures for result in future.result()]


def _bench_device(serial, plan):
    """Push, run every (model, threads) and clean up on one device."""
    info = device_info(serial, plan.timeout)
    _check_abi(serial, plan.binary, plan.abi, info)
    run_dir = f"{plan.device_dir}/run-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _run_checked(serial, f"mkdir -p {shlex.quote(run_dir)}", plan.timeout, f"cannot create {run_dir}")
        binary = f"{run_dir}/benchmark_model"
        _push(serial, plan.binary, binary, plan.timeout)
        _run_checked(serial, f"chmod 755 {shlex.quote(binary)} && [ -x {shlex.quote(binary)} ]", plan.timeout,
                     f"benchmark_model is not executable in {run_dir} (a noexec filesystem? use a directory under "
                     "/data/local/tmp)")
        # An index prefix keeps two models with the same file name apart on the device.
        graphs = [f"{run_dir}/{index}_{os.path.basename(path)}" for index, path in enumerate(plan.models)]
        for path, graph in zip(plan.models, graphs, strict=True):
            _push(serial, path, graph, plan.timeout)
        results = []
        for path, graph, (size, packed) in zip(plan.models, graphs, plan.sizes, strict=True):
            for count in plan.threads:
                parsed = _run_benchmark(serial, plan, run_dir, binary, graph, path, count)
                results.append(_result(serial, plan, path, count, parsed, size, packed, info))
        return results
    finally:
        _clean_up(serial, plan.device_dir, run_dir)


def _run_checked(serial, command, timeout, problem):
    status, stdout, stderr = _shell(serial, command, timeout)
    if status != 0:
        raise DeviceError(serial, f"{problem} (exit {status}): {_tail(stderr + stdout)}")


def _push(serial, local, remote, timeout):
    result = _adb(["push", local, remote], serial, timeout)
    if result.returncode != 0:
        raise DeviceError(serial, f"adb push {local} -> {remote} failed: {_tail(result.stderr + result.stdout)}")


def _run_benchmark(serial, plan, run_dir, binary, graph, model, count):
    """One benchmark_model run; its parsed output."""
    argv = [binary, f"--graph={graph}", f"--num_threads={count}", *plan.flags]
    if plan.cpu_mask:
        argv = ["taskset", plan.cpu_mask, *argv]
    pid_file = f"{run_dir}/benchmark.pid"
    # In the background with its pid written down, so a timed-out run can be killed on the device:
    # killing the local adb client does not always end the device process.
    command = (f"cd {shlex.quote(run_dir)} && {{ {shlex.join(argv)} & echo $! > {shlex.quote(pid_file)}; "
               "wait $!; }")
    what = f"benchmark_model on {os.path.basename(model)} with {count} thread{'s' if count != 1 else ''}"
    try:
        status, stdout, stderr = _shell(serial, command, plan.timeout)
    except DeviceTimeoutError:
        _shell_quietly(serial, f"kill -9 $(cat {shlex.quote(pid_file)}) 2>/dev/null")
        raise DeviceTimeoutError(serial, f"{what} did not finish within {plan.timeout} s") from None
    if status != 0:
        hint = {126: " (not executable: wrong ABI or a noexec filesystem?)",
                127: " (not found, or its loader/libraries are missing)"}.get(status, "")
        raise DeviceError(serial, f"{what} exited with status {status}{hint}:\n{_tail(stderr or stdout)}")
    try:
        return parse_benchmark_output(stdout + "\n" + stderr)
    except ValueError as error:
        raise DeviceError(serial, f"{what}: {error}") from error


def _result(serial, plan, model, count, parsed, size, gzip_size, info):
    extra = {"device_info": info, "binary": os.path.basename(plan.binary), "flags": list(plan.flags),
             "cpu_mask": plan.cpu_mask}
    extra.update({key: parsed[key] for key in ("p5_ms", "p95_ms") if parsed.get(key) is not None})
    return BenchResult(model=model, device=serial, threads=int(count), runs=int(parsed["count"] or 0),
                       init_ms=parsed["init_ms"], first_ms=parsed["first_ms"], warmup_ms=parsed["warmup_ms"],
                       mean_ms=parsed["mean_ms"], std_ms=parsed["std_ms"], min_ms=parsed["min_ms"],
                       max_ms=parsed["max_ms"], p50_ms=parsed["p50_ms"], p90_ms=None, p99_ms=None,
                       size_bytes=size, gzip_bytes=gzip_size, peak_memory_mb=parsed["peak_memory_mb"],
                       op_profile=parsed["op_profile"] or (), extra=extra)


def _shell_quietly(serial, command):
    """Best-effort device command (clean-up): errors are dropped so they never hide the real one."""
    try:
        _shell(serial, command, timeout=60)
    except DeviceError:
        pass


def _clean_up(serial, device_dir, run_dir):
    # rmdir, not rm -rf, for device_dir: it may hold files that are not ours.
    _shell_quietly(serial, f"rm -rf {shlex.quote(run_dir)}; rmdir {shlex.quote(device_dir)} 2>/dev/null")
