"""How a process runs TensorFlow: quietly, with the experiment's threads, deterministically if asked.

- TensorFlow's C++ start-up writes lines to stderr before its logging is set up ("Could not find
  cuda drivers", "oneDNN custom operations are on", "failed call to cuInit"), on every import on a
  machine without a GPU; TF_CPP_MIN_LOG_LEVEL does not reach all of them. `import_tensorflow` imports it
  with the process's stderr pointed at a temporary file, and replays what was written only if the
  import fails.
- `configure` applies an experiment's `runtime` section: the number of threads TensorFlow's kernels
  use, and op determinism (tf.config.experimental.enable_op_determinism, with every seed fixed by
  the stages, and one kernel at a time), under which two runs on the same machine and versions
  give the same bits. Threads must be set before TensorFlow runs its first op; a process that
  already ran one keeps its own.
  On a GPU, op determinism makes TensorFlow choose deterministic kernels or raise an error for ops
  that have none; bitwise equality then holds for one GPU model and driver, not across them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

log = logging.getLogger(__name__)

# TensorFlow's C++ logging, read when it starts (also in worker processes, which inherit it): 3
# keeps even its ERROR lines out (on a CPU-only machine "failed call to cuInit"; with TF 2.21 a
# "NodeDef mentions attribute use_unbounded_threadpool" line per input pipeline). Real failures
# still raise Python exceptions; `repro -v` sets 0 and shows everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_to_file():
    """Point file descriptor 2 at a temporary file for the block; yield the file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Import TensorFlow (and Keras) without its start-up chatter; return the tensorflow module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_to_file() as capture:
        try:
            import tensorflow
            import keras  # noqa: F401  (its backend import logs the same way)
            tensorflow.config.list_physical_devices()   # CUDA probing logs at first use
        except BaseException:
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
    return tensorflow


def configure(*, deterministic: bool, threads: int | None) -> None:
    """Apply a runtime section to this process (safe to call more than once).

    `threads` is TensorFlow's intra-op threads (how many cores one kernel splits its work over)
    and, without op determinism, its inter-op threads (how many kernels run side by side). With op
    determinism the kernels run one at a time: two kernels running side by side share the intra-op
    threads, and on a CPU InceptionV3's gradients then came out with other last bits in about a
    third of the calls, from run to run and within one process (docs/determinism.md)."""
    tf = import_tensorflow()
    threading = tf.config.threading
    for kind, count, get, set_ in (
            ("intra-op", threads, threading.get_intra_op_parallelism_threads,
             threading.set_intra_op_parallelism_threads),
            ("inter-op", 1 if deterministic else threads, threading.get_inter_op_parallelism_threads,
             threading.set_inter_op_parallelism_threads)):
        if count is not None and get() != count:
            try:
                set_(count)
            except RuntimeError:
                log.info("TensorFlow already started with %s %s threads; keeping them", get() or "its default", kind)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def give_back_memory() -> None:
    """Hand freed memory back to the system: collect Python's garbage, then ask glibc to return
    its free pages (malloc_trim; elsewhere than glibc nothing more happens). The driver calls it
    before the models train, so that its share of the run's peak is its imports alone."""
    import ctypes
    import gc
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
