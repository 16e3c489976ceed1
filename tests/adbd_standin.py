"""A stand-in Android device daemon (adbd) that the real Debian `adb` server can connect to.

It speaks the adb wire protocol over loopback TCP (what `adb connect 127.0.0.1:PORT` uses):
24-byte message headers, CNXN (optionally AUTH, to look "unauthorized"), OPEN / OKAY / WRTE /
CLSE streams, the "shell:" service (v1 raw and shell protocol v2) and the "sync:" service (push,
pull, stat, list). Shell commands run for real with /bin/sh on this host, in a sandbox directory,
with a generated `getprop` on PATH that answers from a dict of properties.

The stand-in maps no paths: the device's filesystem is the host's. Tests therefore pass a
temporary directory as the device working directory (bench_adb's ``device_dir``), and the sync
service refuses to write anywhere outside the sandbox, so a test can never write outside its
temporary directories.

The module also writes a stand-in `benchmark_model`: a script that really runs a .tflite file
with the LiteRT interpreter and prints the classic TFLite benchmark_model output.
"""

import contextlib
import dataclasses
import errno
import os
import queue
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

# Message commands are their four ASCII letters read as a little-endian uint32.
A_SYNC, A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (
    int.from_bytes(name, "little") for name in (b"SYNC", b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
# 0x01000001 tells the host it may skip the payload checksum; we still send a correct one.
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
_HEADER = struct.Struct("<6I")
# Features the stand-in implements. sendrecv_v2 / abb / delayed_ack are left out on purpose so
# the client falls back to the SEND/RECV, shell and per-WRTE-OKAY paths implemented here.
FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")
# Shell protocol v2 packet ids.
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW = range(6)
SYNC_DATA_MAX = 64 * 1024

DEFAULT_PROPERTIES = {
    "ro.product.name": "standin",
    "ro.product.model": "Standin Phone",
    "ro.product.device": "standin",
    "ro.product.manufacturer": "Mobilecls",
    "ro.board.platform": "standin-soc",
    "ro.soc.model": "SM0000",
    "ro.product.cpu.abi": "x86_64",
    "ro.product.cpu.abilist": "x86_64",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
}


def _checksum(payload):
    return sum(payload) & 0xFFFFFFFF


def _recv_exact(sock, size):
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("connection closed")
        chunks += chunk
    return bytes(chunks)


class _Stream:
    """One OPENed service: incoming WRTE payloads queue up; writes wait for the host's OKAY."""

    def __init__(self, connection, local_id, remote_id):
        self.connection, self.local_id, self.remote_id = connection, local_id, remote_id
        self.incoming = queue.Queue()
        self.acked = threading.Event()
        self.closed = threading.Event()
        self.write_lock = threading.Lock()
        self.buffer = bytearray()
        self.on_close = None

    def write(self, data):
        """Send ``data`` in WRTE messages, one at a time, each acknowledged by an OKAY."""
        with self.write_lock:
            view = memoryview(bytes(data))
            while view and not self.closed.is_set():
                chunk, view = view[:self.connection.max_payload], view[self.connection.max_payload:]
                self.acked.clear()
                self.connection.send(A_WRTE, self.local_id, self.remote_id, bytes(chunk))
                while not self.acked.wait(0.1):
                    if self.closed.is_set():
                        return False
        return not self.closed.is_set()

    def read(self):
        """The next WRTE payload from the host, or None once the host closed the stream."""
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            return data
        return self.incoming.get()

    def read_exact(self, size):
        """Exactly ``size`` bytes (sync requests span WRTE boundaries), or None at close."""
        while len(self.buffer) < size:
            data = self.incoming.get()
            if data is None:
                return None
            self.buffer += data
        data, self.buffer = bytes(self.buffer[:size]), self.buffer[size:]
        return data

    def close(self):
        """Close from the device side (the host answers with its own CLSE, which is ignored)."""
        if not self.closed.is_set():
            self.closed.set()
            self.connection.send(A_CLSE, self.local_id, self.remote_id)
            self.connection.forget(self)

    def host_closed(self):
        self.closed.set()
        self.acked.set()
        self.incoming.put(None)
        if self.on_close is not None:
            self.on_close()


class _Connection:
    """One TCP connection from the adb server: the handshake, then streams until EOF."""

    def __init__(self, device, sock):
        self.device, self.sock = device, sock
        self.send_lock = threading.Lock()
        self.streams = {}
        self.streams_lock = threading.Lock()
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD

    def send(self, command, arg0, arg1, payload=b""):
        header = _HEADER.pack(command, arg0, arg1, len(payload), _checksum(payload), command ^ 0xFFFFFFFF)
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.sendall(header + payload)

    def forget(self, stream):
        with self.streams_lock:
            self.streams.pop(stream.local_id, None)

    def run(self):
        try:
            while True:
                command, arg0, arg1, length, _, magic = _HEADER.unpack(_recv_exact(self.sock, _HEADER.size))
                if magic != command ^ 0xFFFFFFFF:
                    return
                self.handle(command, arg0, arg1, _recv_exact(self.sock, length) if length else b"")
        except (EOFError, OSError):
            pass
        finally:
            with self.streams_lock:
                streams, self.streams = list(self.streams.values()), {}
            for stream in streams:
                stream.host_closed()
            with contextlib.suppress(OSError):
                self.sock.close()

    def handle(self, command, arg0, arg1, payload):
        if command == A_CNXN:
            self.max_payload = min(MAX_PAYLOAD, arg1) or MAX_PAYLOAD
            if self.device.unauthorized:
                # A device whose user has not accepted this host's key: every signature is
                # answered with a new token, so the host ends up offering its public key and
                # listing the device as "unauthorized".
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            else:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner())
        elif command == A_AUTH:
            if arg0 == AUTH_SIGNATURE:
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
        elif command == A_OPEN and not self.device.unauthorized:
            self.open(arg0, payload.rstrip(b"\0").decode("utf-8", "replace"))
        elif command in (A_OKAY, A_WRTE, A_CLSE):
            with self.streams_lock:
                stream = self.streams.get(arg1)
            if stream is None:
                return
            if command == A_OKAY:
                stream.acked.set()
            elif command == A_WRTE:
                stream.incoming.put(payload)
                self.send(A_OKAY, stream.local_id, stream.remote_id)
            else:
                self.forget(stream)
                stream.host_closed()

    def open(self, remote_id, service):
        handler = self.device.handler_for(service)
        if handler is None:
            self.send(A_CLSE, 0, remote_id)  # refusing an OPEN is a CLSE with local id 0
            return
        with self.streams_lock:
            local_id, self.next_id = self.next_id, self.next_id + 1
            stream = self.streams[local_id] = _Stream(self, local_id, remote_id)
        self.send(A_OKAY, local_id, remote_id)
        threading.Thread(target=self._serve, args=(handler, stream), daemon=True).start()

    @staticmethod
    def _serve(handler, stream):
        try:
            handler(stream)
        finally:
            stream.close()


class StandinDevice:
    """The stand-in adbd: a listening loopback socket and the services behind it.

    Args:
        root: the sandbox directory. Shell commands run with it as working directory and the
            sync service writes only below it.
        properties: getprop values; also the product name/model/device in the CNXN banner.
        unauthorized: answer the handshake with AUTH tokens only (like a device whose user
            never accepted the host's key).
    """

    def __init__(self, root, properties=None, unauthorized=False):
        self.root = os.path.realpath(root)
        self.properties = dict(DEFAULT_PROPERTIES if properties is None else properties)
        self.unauthorized = unauthorized
        self.bin_dir = os.path.join(self.root, ".standin-bin")
        os.makedirs(self.bin_dir, exist_ok=True)
        self._write_getprop()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self._connections = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def banner(self):
        props = "".join(f"{key}={self.properties.get(key, '')};"
                        for key in ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{props}features={','.join(FEATURES)}".encode()

    def _write_getprop(self):
        # A POSIX sh getprop: `getprop NAME` prints the value (empty line when unset) and a bare
        # `getprop` lists "[name]: [value]" lines, like Android's.
        cases = "".join(f"  {shlex.quote(key)}) printf '%s\\n' {shlex.quote(value)} ;;\n"
                        for key, value in self.properties.items())
        listing = "".join(f"[{key}]: [{value}]\n" for key, value in sorted(self.properties.items()))
        script = (f"#!/bin/sh\nif [ $# -eq 0 ]; then\n  printf '%s' {shlex.quote(listing)}\n  exit 0\nfi\n"
                  f"case \"$1\" in\n{cases}  *) printf '%s\\n' \"${{2:-}}\" ;;\nesac\n")
        path = os.path.join(self.bin_dir, "getprop")
        with open(path, "w") as handle:
            handle.write(script)
        os.chmod(path, 0o755)

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            connection = _Connection(self, sock)
            self._connections.append(connection)
            threading.Thread(target=connection.run, daemon=True).start()

    def close(self):
        """Stop listening and drop every connection (the host sees the device go away)."""
        self.listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    # --- services -----------------------------------------------------------------------

    def handler_for(self, service):
        """The function serving ``service`` (an OPEN's destination), or None to refuse it."""
        if service == "sync:":
            return self._sync
        name, _, command = service.partition(":")
        if name == "shell" or name.startswith("shell,"):
            args = name.split(",")[1:]
            if "v2" in args:
                return lambda stream: self._shell_v2(stream, command)
            return lambda stream: self._shell_v1(stream, command)
        return None

    def _spawn(self, command, merge_stderr):
        env = dict(os.environ, PATH=f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
        argv = ["/bin/sh", "-c", command] if command else ["/bin/sh"]
        # A session of its own, so closing the stream can end the whole process group.
        return subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                start_new_session=True)

    @staticmethod
    def _kill_on_close(stream, process):
        def kill():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        stream.on_close = kill
        if stream.closed.is_set():
            kill()

    @staticmethod
    def _pump(source, sink):
        for chunk in iter(lambda: os.read(source.fileno(), 65536), b""):
            if not sink(chunk):
                break
        source.close()

    def _shell_v1(self, stream, command):
        process = self._spawn(command, merge_stderr=True)
        self._kill_on_close(stream, process)
        threading.Thread(target=self._feed_stdin_v1, args=(stream, process), daemon=True).start()
        self._pump(process.stdout, stream.write)
        process.wait()

    @staticmethod
    def _feed_stdin_v1(stream, process):
        with contextlib.suppress(OSError):
            for data in iter(stream.read, None):
                process.stdin.write(data)
                process.stdin.flush()
        with contextlib.suppress(OSError):
            process.stdin.close()

    def _shell_v2(self, stream, command):
        process = self._spawn(command, merge_stderr=False)
        self._kill_on_close(stream, process)

        def packet(kind):
            return lambda data: stream.write(struct.pack("<BI", kind, len(data)) + data)

        threading.Thread(target=self._feed_stdin_v2, args=(stream, process), daemon=True).start()
        errors = threading.Thread(target=self._pump, args=(process.stderr, packet(SHELL_STDERR)), daemon=True)
        errors.start()
        self._pump(process.stdout, packet(SHELL_STDOUT))
        errors.join()
        code = process.wait()
        packet(SHELL_EXIT)(bytes([code & 0xFF]))

    @staticmethod
    def _feed_stdin_v2(stream, process):
        with contextlib.suppress(OSError):
            while (header := stream.read_exact(5)) is not None:
                kind, length = struct.unpack("<BI", header)
                data = stream.read_exact(length) if length else b""
                if data is None:
                    break
                if kind == SHELL_STDIN:
                    process.stdin.write(data)
                    process.stdin.flush()
                elif kind == SHELL_CLOSE_STDIN:
                    break
        with contextlib.suppress(OSError):
            process.stdin.close()

    # --- sync -----------------------------------------------------------------------------

    def _inside(self, path):
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def _sync(self, stream):
        requests = {b"STAT": self._sync_stat_v1, b"STA2": self._sync_stat_v2, b"LST2": self._sync_stat_v2,
                    b"LIST": self._sync_list, b"LIS2": self._sync_list, b"SEND": self._sync_send,
                    b"RECV": self._sync_recv}
        while (header := stream.read_exact(8)) is not None:
            request, length = header[:4], struct.unpack("<I", header[4:])[0]
            payload = stream.read_exact(length) if length else b""
            if payload is None or request == b"QUIT" or request not in requests:
                return
            if not requests[request](stream, request, os.fsdecode(payload)):
                return

    @staticmethod
    def _fail(stream, message):
        data = message.encode()
        return stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    @staticmethod
    def _sync_stat_v1(stream, _, path):
        try:
            info = os.lstat(path)
            fields = (info.st_mode, info.st_size & 0xFFFFFFFF, int(info.st_mtime))
        except OSError:
            fields = (0, 0, 0)
        return stream.write(b"STAT" + struct.pack("<3I", *fields))

    @staticmethod
    def _stat_v2_fields(info):
        return (info.st_dev, info.st_ino, info.st_mode, info.st_nlink, info.st_uid, info.st_gid, info.st_size,
                int(info.st_atime), int(info.st_mtime), int(info.st_ctime))

    def _sync_stat_v2(self, stream, request, path):
        try:
            info = os.stat(path) if request == b"STA2" else os.lstat(path)
            error, fields = 0, self._stat_v2_fields(info)
        except OSError as failure:
            error, fields = failure.errno or errno.EIO, (0,) * 10
        return stream.write(request + struct.pack("<IQQIIIIQqqq", error, *fields))

    def _sync_list(self, stream, request, path):
        try:
            names = sorted(os.listdir(path))
        except OSError:
            names = []
        for name in names:
            try:
                info = os.lstat(os.path.join(path, name))
            except OSError:
                continue
            encoded = os.fsencode(name)
            if request == b"LIS2":
                entry = b"DNT2" + struct.pack("<IQQIIIIQqqqI", 0, *self._stat_v2_fields(info), len(encoded))
            else:
                entry = b"DENT" + struct.pack("<4I", info.st_mode, info.st_size & 0xFFFFFFFF,
                                              int(info.st_mtime), len(encoded))
            if not stream.write(entry + encoded):
                return False
        done = struct.calcsize("<IQQIIIIQqqqI") if request == b"LIS2" else 16
        return stream.write(b"DONE" + bytes(done))

    def _sync_send(self, stream, _, spec):
        path, _, mode_text = spec.rpartition(",")
        mode = int(mode_text or "0")
        refusal = None if self._inside(path) else f"stand-in refuses to write outside its sandbox: {path}"
        handle, temporary = None, None
        if refusal is None:
            try:
                # fixed_push_mkdir: the device creates missing parent directories itself.
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".push-")
                handle = os.fdopen(fd, "wb")
            except OSError as failure:
                refusal = f"cannot write {path}: {failure.strerror}"
        try:
            # Even after a refusal the host keeps sending DATA until DONE; read it all first.
            while (header := stream.read_exact(8)) is not None:
                kind, value = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"DATA":
                    data = stream.read_exact(value)
                    if data is None:
                        return False
                    if handle is not None:
                        handle.write(data)
                elif kind == b"DONE":
                    if refusal is not None:
                        return self._fail(stream, refusal)
                    handle.close()
                    if stat.S_ISLNK(mode):
                        with open(temporary, "rb") as target:
                            os.symlink(target.read(), path)
                    else:
                        os.chmod(temporary, stat.S_IMODE(mode) or 0o644)
                        os.replace(temporary, path)
                        os.utime(path, (value, value))
                    temporary = None
                    return stream.write(b"OKAY" + bytes(4))
                else:
                    return self._fail(stream, f"unexpected {kind!r} during SEND")
            return False
        finally:
            if handle is not None:
                handle.close()
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def _sync_recv(self, stream, _, path):
        try:
            handle = open(path, "rb")
        except OSError as failure:
            return self._fail(stream, f"remote object '{path}' does not exist"
                              if failure.errno == errno.ENOENT else f"{path}: {failure.strerror}")
        with handle:
            while chunk := handle.read(SYNC_DATA_MAX):
                if not stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk):
                    return False
        return stream.write(b"DONE" + bytes(4))


# --- the adb server side ------------------------------------------------------------------


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@dataclasses.dataclass
class AdbServer:
    """A private adb server: its port (ANDROID_ADB_SERVER_PORT) and the environment to reach it.

    Its own HOME keeps the server's RSA key (~/.android/adbkey) out of the user's home.
    """

    adb: str
    port: int
    env: dict

    def run(self, *args, timeout=30):
        """Run ``adb ARGS`` against this server; returns the CompletedProcess (text)."""
        return subprocess.run([self.adb, *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def connect(self, device, expect="device", timeout=10):
        """`adb connect` to a stand-in and wait until `adb devices` lists it as ``expect``.

        `adb connect` exits 0 even when it fails, so its output and the device list are checked.

        Raises:
            RuntimeError: the connection failed or the device never reached the ``expect`` state.
        """
        result = self.run("connect", device.serial)
        output = result.stdout + result.stderr
        if expect == "device" and f"connected to {device.serial}" not in output:
            raise RuntimeError(f"adb connect {device.serial} failed: {output.strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = dict(line.split("\t")[:2] for line in self.run("devices").stdout.splitlines()[1:]
                          if "\t" in line)
            if states.get(device.serial) == expect:
                return device.serial
            time.sleep(0.1)
        raise RuntimeError(f"{device.serial} did not become {expect!r} (adb connect said: {output.strip()}; "
                           f"adb devices: {states})")

    def disconnect(self, device):
        self.run("disconnect", device.serial)


@contextlib.contextmanager
def adb_server(home):
    """Start a private adb server (own port, HOME=``home``) and kill it on exit.

    Raises:
        FileNotFoundError: no `adb` executable ($ADB or PATH).
    """
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb:
        raise FileNotFoundError("adb not found; apt-get install adb")
    os.makedirs(home, exist_ok=True)
    port = free_port()
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HOME=home)
    server = AdbServer(adb, port, env)
    started = server.run("start-server")
    if started.returncode != 0:
        raise RuntimeError(f"adb start-server failed: {started.stderr.strip()}")
    try:
        yield server
    finally:
        server.run("kill-server")


@contextlib.contextmanager
def running_standin(root, properties=None, unauthorized=False, server=None):
    """A stand-in device listening on a free loopback port; connected to ``server`` if given.

    With a server it runs `adb connect` and checks the device shows up ("device", or
    "unauthorized" in that mode), then disconnects on exit.
    """
    device = StandinDevice(root, properties, unauthorized)
    try:
        if server is not None:
            server.connect(device, expect="unauthorized" if unauthorized else "device")
        yield device
    finally:
        if server is not None:
            server.disconnect(device)
        device.close()


# --- the stand-in benchmark_model ------------------------------------------------------------

_BENCHMARK_MODEL = r'''
"""Stand-in for TFLite's benchmark_model: runs --graph with the LiteRT interpreter on this host.

It prints the classic benchmark_model log lines so the output parser sees what a phone prints.
"""
import os
import resource
import statistics
import sys
import time


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_op_summary(interpreter, mean_ms):
    """A "Summary by node type" table: the graph's real op counts; the Python API times no single
    op, so the measured mean is shared out by op count (a stand-in, not a profile)."""
    counts = {}
    for op in interpreter._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    total = sum(counts.values()) or 1
    print("============================== Summary by node type ==============================")
    print("\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]")
    cdf = 0.0
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        share = 100.0 * count / total
        cdf += share
        print(f"\t{name:>24}\t{count:>9}\t{mean_ms * count / total:>10.3f}\t{share:>10.3f}%\t{cdf:>10.3f}%"
              f"\t{0:>10.3f}\t{count:>9}")
    print()


def main(argv):
    flags = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    graph = flags.get("graph", "")
    if not graph or not os.path.isfile(graph):
        print(f"ERROR: Could not open '{graph}'.", file=sys.stderr)
        print("ERROR: Benchmarking failed.", file=sys.stderr)
        return 1
    threads = int(flags.get("num_threads", "1"))
    runs, warmups = int(flags.get("num_runs", "5")), int(flags.get("warmup_runs", "1"))
    start_rss = rss_mb()
    print("INFO: STARTING!")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{graph}]")
    started = time.perf_counter()
    # The LiteRT interpreter directly (not via mobilecls._tf): TensorFlow would add seconds per run.
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=graph, num_threads=threads)
    interpreter.allocate_tensors()
    init_us = (time.perf_counter() - started) * 1e6
    init_rss = rss_mb()
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 1e6:.6f}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")

    def timed(count):
        times = []
        for _ in range(count):
            begin = time.perf_counter()
            interpreter.invoke()
            times.append(int((time.perf_counter() - begin) * 1e6) or 1)
        return times

    def stats(times):
        std = int(statistics.pstdev(times)) if len(times) > 1 else 0
        return (f"count={len(times)} first={times[0]} curr={times[-1]} min={min(times)} max={max(times)} "
                f"avg={statistics.fmean(times):g} std={std}")

    print("INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if "
          "exceeding 150 seconds.")
    warm = timed(max(warmups, 1))
    print(f"INFO: {stats(warm)}")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if "
          "exceeding 150 seconds.")
    measured = timed(max(runs, 1))
    print(f"INFO: {stats(measured)}")
    print()
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]}, "
          f"Warmup (avg): {statistics.fmean(warm):g}, Inference (avg): {statistics.fmean(measured):g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only "
          "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at "
          "your one's own risk.")
    print(f"INFO: Memory footprint delta from the start of the tool (MB): init={init_rss - start_rss:.4f} "
          f"overall={rss_mb() - start_rss:.4f}")
    if flags.get("enable_op_profiling") == "true":
        print_op_summary(interpreter, statistics.fmean(measured) / 1000)
    if flags.get("report_peak_memory_footprint") == "true":
        print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {rss_mb():.4f}")
    sys.stdout.flush()
    return 0


sys.exit(main(sys.argv[1:]))
'''


def write_benchmark_model(directory, name="benchmark_model"):
    """Write the stand-in benchmark_model script (shebang: this Python) and return its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(f"#!{sys.executable}\n{_BENCHMARK_MODEL.lstrip()}")
    os.chmod(path, 0o755)
    return path


def write_script(directory, name, body):
    """Write an executable /bin/sh script (a misbehaving benchmark_model) and return its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(f"#!/bin/sh\n{body}\n")
    os.chmod(path, 0o755)
    return path
