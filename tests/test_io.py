"""The run-directory lock: a second run is refused naming the holder; a killed holder frees it."""
import subprocess
import sys
import time

import pytest

from repro.io import RunLock, RunLockedError, fingerprint


def test_a_second_holder_is_refused_with_the_first_named(tmp_path):
    lock = tmp_path / "run" / ".lock"
    with RunLock(lock):
        with pytest.raises(RunLockedError, match=r"in use by pid \d+ on .* since"):
            with RunLock(lock):
                pass
    with RunLock(lock):      # released: the next run gets it
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", f"from repro.io import RunLock\nimport time\n"
                               f"with RunLock({str(lock)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        with RunLock(lock):
            pass
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    with RunLock(lock):      # the lock file is still there, but nobody holds it
        assert lock.exists()


def test_fingerprints_follow_content_not_key_order():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path):
    from repro.io import atomic_path
    target = tmp_path / "maps" / "img1.npz"
    with pytest.raises(OSError, match=r"img1.npz: could not be written \(6400 requested and 5088 written\); "
                                      r"[\d.]+ GB free on its file system"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError("6400 requested and 5088 written")      # numpy's message for a short write
    assert list((tmp_path / "maps").iterdir()) == []


def test_cpu_identity_names_the_model_and_the_vector_extensions_kernels_depend_on():
    from repro.provenance import cpu_identity
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 x2apic\n\n"
               "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 x2apic\n")
    assert cpu_identity(cpuinfo) == {"cpu": "AMD EPYC 9R14",
                                     "vector_extensions": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"]}
    assert cpu_identity("flags : sse4_2 avx2\n") == {"cpu": "", "vector_extensions": ["sse4_2", "avx2"]}


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    from repro.io import atomic_folder
    target = tmp_path / "report"
    with atomic_folder(target) as folder:
        (folder / "a.txt").write_text("first")
    with atomic_folder(target) as folder:
        (folder / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]          # nothing of the old one left
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as folder:
            (folder / "c.txt").write_text("broken")
            raise RuntimeError("a page failed")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]          # the old one stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]        # no temporary folder left
