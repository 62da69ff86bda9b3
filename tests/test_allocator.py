"""The allocator setting applies on glibc, is idempotent and harmless (its speed: make bench)."""

import platform

import torch

from falign.base import memory as allocator


def test_keep_freed_memory_is_idempotent_and_harmless():
    first = allocator.keep_freed_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True
    assert allocator.keep_freed_memory() is first
    x = torch.ones(8 << 20)  # large blocks still allocate and free normally afterwards
    assert float(x.sum()) == 8 << 20
