"""Triton's compile key, kept on disk so that a new process does not hash libtriton again.

The first Triton compile of every process calls ``triton.runtime.cache.triton_key()``, which
hashes Triton's Python sources and its 400 MB ``libtriton.so``: about 2 s, most of the first
call on a new shape in a fresh process (docs/kernels.md, "First call"). The value changes only
when those files do. ``use_saved_triton_key`` keeps it in ``cache_root()/triton_key.json`` under a
fingerprint of the files (path, size, mtime, inode of every file under Triton's compiler,
backends, language, runtime and _C folders, a superset of what it hashes) and hands Triton the stored
value; a changed or reinstalled Triton has another fingerprint and is hashed afresh. Any
failure (unreadable cache, a Triton without this function) leaves Triton's own function in place.
TORCHAO_GEMLITE_SAVED_TRITON_KEY=0 turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

from .configs import cache_root

FILE_NAME = "triton_key.json"
_FOLDERS = ("compiler", "backends", "language", "runtime", "_C")


def triton_fingerprint(triton_dir: str) -> str:
    """A digest of the stat of every file Triton's key may cover (os.stat only: a few ms)."""
    digest = hashlib.sha256()
    for folder in _FOLDERS:
        for root, dirs, files in os.walk(os.path.join(triton_dir, folder)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".so")):
                    path = os.path.join(root, name)
                    st = os.stat(path)
                    digest.update(f"{os.path.relpath(path, triton_dir)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}\n"
                                  .encode())
    return digest.hexdigest()


def saved_key(cache_file, fingerprint: str, compute) -> str:
    """The key stored under ``fingerprint`` in ``cache_file``, or ``compute()`` written there
    (atomically: several processes may start at once)."""
    try:
        with open(cache_file) as f:
            saved = json.load(f)
        if saved.get("fingerprint") == fingerprint and isinstance(saved.get("key"), str):
            return saved["key"]
    except (OSError, ValueError):
        pass
    key = compute()
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"fingerprint": fingerprint, "key": key}, f)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache folder costs the hash in every process, nothing else
    return key


@functools.cache
def use_saved_triton_key() -> None:
    """Installs the saved key as Triton's (once a process; call before the first compile)."""
    if os.environ.get("TORCHAO_GEMLITE_SAVED_TRITON_KEY", "1") == "0":
        return
    try:
        import triton
        from triton.runtime import cache

        original = cache.triton_key
        triton_dir = os.path.dirname(os.path.abspath(triton.__file__))
        key = saved_key(str(cache_root() / FILE_NAME), triton_fingerprint(triton_dir), original)
    except Exception:  # noqa: BLE001 -- an optimisation: on any surprise Triton keeps its own function
        return
    cache.triton_key = lambda: key
