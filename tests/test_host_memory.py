"""host_memory.retain_freed_memory: freed buffers are reused without page faults."""

import pathlib
import platform
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Mallocs, touches (memset) and frees a 64 MB buffer, above glibc's largest
# default mmap threshold, six times; prints the page faults of the last five.
# (Not numpy: it asks the kernel for huge pages, which hides the faults.)
SCRIPT = """
import ctypes, resource, sys
from betatc_jax import host_memory
applied = host_memory.retain_freed_memory() if sys.argv[1] == "retain" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 2**20

def touch():
  buffer = libc.malloc(size)
  ctypes.memset(buffer, 1, size)
  last = ctypes.c_ubyte.from_address(buffer + size - 1).value
  libc.free(buffer)
  return last

touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
values = [touch() for _ in range(5)]
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5, values)
"""


def run(setting):
  out = subprocess.run([sys.executable, "-c", SCRIPT, setting], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout.strip().split(maxsplit=2)
  return out[0], float(out[1]), out[2]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_retained_memory_is_reused_without_page_faults():
  _, default_faults, default_values = run("default")
  applied, retained_faults, retained_values = run("retain")
  assert applied == "True"
  # 64 MB is 16,384 pages of 4 KB: glibc maps them afresh for every buffer,
  # the retained heap reuses them.
  assert default_faults > 8_000, default_faults
  assert retained_faults < 100, retained_faults
  assert retained_values == default_values == "[1, 1, 1, 1, 1]"
