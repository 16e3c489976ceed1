"""The grouped 1x1 convolution's training kernel: a small TensorFlow op compiled on first use.

Why: ``GroupedPointwiseConvBN`` computes a grouped 1x1 convolution as one matrix product per
group. Built from TensorFlow ops, that splits the input into g channel blocks and concatenates
the g outputs, and the backward pass copies them again (Slice, Concat): a fifth of ShuffleNetV1
g=8's training time went to these copies (docs/benchmarks.md). The op in ``grouped_matmul.cc``
reads and writes each group's block in place, forward and backward, with the same arithmetic;
its second pair of ops also does the layer's BatchNorm (batch statistics) and ReLU in training
(``grouped_conv_batch_norm``): TensorFlow's BatchNorm and ReLU ops around the product cost a
quarter of a ShuffleNetV1 g=3 training step (docs/benchmarks.md).

The library is compiled with the C++ compiler (``$CXX``, default ``g++``) against the installed
TensorFlow's headers the first time a process needs it (``make`` does it at install time), into
``$MOBILECLS_CACHE/ops`` (default ``~/.cache/mobilecls/ops``; the file name holds a hash of the
source, the TensorFlow version and the CPU, so an upgrade rebuilds it). Without a compiler, or
with ``MOBILECLS_GROUPED_KERNEL=split``, the layer uses TensorFlow's own ops (the same function,
slower), and says so once.

    python -m mobilecls.models.grouped_kernel      # build now, print the library's path
"""

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from mobilecls.files import DEFAULT_CACHE, cache_folder, replacing

SOURCE = Path(__file__).with_name("grouped_matmul.cc")
_OPTIMIZATION = ("-O3", "-march=native")
# Tried in order: TensorFlow's Eigen headers do not compile with AVX512-FP16 enabled under g++ 12.
_ARCHITECTURE_FLAGS = (("-mno-avx512fp16",), ())

_state = {"library": None, "tried": False, "split": False}


class KernelUnavailable(RuntimeError):
    """The op library could not be built or loaded; the message says why."""


def _tensorflow():
    from mobilecls._tf import tf

    return tf


def _cpu_signature():
    """What the compiled code depends on besides the source: the machine and its CPU features."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return f"{platform.machine()}\n{flags}"


def library_path():
    """Where this source, this TensorFlow and this CPU's library is (or will be) built."""
    tf = _tensorflow()
    root = cache_folder() or DEFAULT_CACHE  # 'off' turns off the data cache, not this build
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(f"\n{tf.__version__}\n{tf.sysconfig.get_compile_flags()}\n{_cpu_signature()}".encode())
    return root / "ops" / f"grouped_matmul-{digest.hexdigest()[:16]}.so"


def build(path=None):
    """Compile the op library to ``path`` (default ``library_path()``) atomically; returns the path.

    Raises ``KernelUnavailable`` naming the compiler and its first error line.
    """
    tf = _tensorflow()
    path = Path(path or library_path())
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise KernelUnavailable(f"no C++ compiler {compiler!r} on PATH (set $CXX) to build {SOURCE.name}")
    tf_flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    error = ""
    with replacing(path) as temporary:
        for architecture in _ARCHITECTURE_FLAGS:
            command = [compiler, "-shared", "-fPIC", *_OPTIMIZATION, *architecture, "-w", str(SOURCE),
                       "-o", str(temporary), *tf_flags]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                return path
            lines = [line for line in result.stderr.splitlines() if "error" in line]
            error = (lines or result.stderr.splitlines() or ["(no output)"])[0].strip()
        raise KernelUnavailable(f"{compiler} could not build {SOURCE.name}: {error}")


def _load():
    tf = _tensorflow()
    path = library_path()
    if not path.exists():
        build(path)
    try:
        library = tf.load_op_library(str(path))
    except tf.errors.NotFoundError as error:
        raise KernelUnavailable(f"TensorFlow could not load {path}: {error}") from error

    @tf.RegisterGradient("MobileclsGroupedMatmul")
    def _gradient(op, dy):
        x, kernel = op.inputs
        groups = op.get_attr("groups")
        return (library.mobilecls_grouped_matmul_grad_input(dy, kernel, groups=groups),
                library.mobilecls_grouped_matmul_grad_kernel(x, dy, groups=groups))

    @tf.RegisterGradient("MobileclsGroupedConvBatchNorm")
    def _conv_batch_norm_gradient(op, dy, *_):  # z, mean and variance feed no loss (moving averages only)
        _, z, mean, variance = op.outputs
        attributes = {name: op.get_attr(name) for name in ("groups", "epsilon", "relu")}
        return library.mobilecls_grouped_conv_batch_norm_grad(dy, z, *op.inputs, mean, variance, **attributes)

    return library


def library():
    """The loaded op library, or None (TensorFlow's ops then do the job; warned once)."""
    if _state["split"] or os.environ.get("MOBILECLS_GROUPED_KERNEL", "").strip().lower() == "split":
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _state["library"] = _load()
        except KernelUnavailable as error:
            warnings.warn(f"mobilecls: {error}; grouped 1x1 convolutions train with TensorFlow's ops "
                          "(the same function, slower)", RuntimeWarning, stacklevel=2)
    return _state["library"]


@contextlib.contextmanager
def split_products():
    """Inside this, graphs traced use TensorFlow's split/matmul/concat ops (for comparisons)."""
    previous, _state["split"] = _state["split"], True
    try:
        yield
    finally:
        _state["split"] = previous


def split_matmul(x, kernel, groups):
    """The same product from TensorFlow's ops: split the input, g MatMuls, concatenate (the fallback)."""
    tf = _tensorflow()
    outputs = kernel.shape[1] // groups
    return tf.concat([tf.matmul(part, kernel[:, group * outputs:(group + 1) * outputs])
                      for group, part in enumerate(tf.split(x, groups, axis=-1))], -1)


def grouped_matmul(x, kernel, groups):
    """(pixels, Cin) x the (Cin / g, Cout) kernel of a g-group 1x1 convolution -> (pixels, Cout).

    With the op library; callers check ``library()`` first.
    """
    return library().mobilecls_grouped_matmul(x, kernel, groups=groups)


def grouped_conv_batch_norm(x, kernel, gamma, beta, groups, epsilon, relu):
    """The training layer in one op: the grouped product of ``grouped_matmul``, BatchNorm with the
    batch's statistics (gamma, beta, epsilon), then ReLU if ``relu``.

    Returns (y, mean, variance): the output (pixels, Cout) and the batch's per-channel mean and
    biased variance, for the moving averages. With the op library; callers check ``library()`` first.
    """
    y, _, mean, variance = library().mobilecls_grouped_conv_batch_norm(
        x, kernel, gamma, beta, groups=groups, epsilon=epsilon, relu=relu)
    return y, mean, variance


if __name__ == "__main__":
    try:
        print(build() if not library_path().exists() else library_path())
    except KernelUnavailable as error:
        sys.exit(f"mobilecls: {error}")
