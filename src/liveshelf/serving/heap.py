"""Give memory freed by a large build back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def release_freed_memory() -> bool:
    """Collect garbage, then ask glibc's allocator to return freed heap pages (``malloc_trim``).

    A start-up build (state replay, catalogue, text indexes) frees hundreds of megabytes of temporary
    objects that the allocator would otherwise keep mapped; returns whether the trim ran (glibc only).
    """
    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # musl or another libc without malloc_trim
        return False


__all__ = ["release_freed_memory"]
