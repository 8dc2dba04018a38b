"""The saved Triton compile key (kernels/triton_key.py): the stored value is Triton's own,
reused while Triton's files are unchanged, recomputed when they change or the file is bad."""

import json
import os
import subprocess
import sys

from torchao_gemlite.kernels.triton_key import saved_key, triton_fingerprint


def _fake_triton(root):
    for folder, name in (("compiler", "compiler.py"), ("language", "core.py"), ("_C", "libtriton.so")):
        os.makedirs(root / folder, exist_ok=True)
        (root / folder / name).write_text("v1")
    return str(root)


def test_fingerprint_follows_the_files(tmp_path):
    triton_dir = _fake_triton(tmp_path)
    before = triton_fingerprint(triton_dir)
    assert triton_fingerprint(triton_dir) == before
    (tmp_path / "language" / "core.py").write_text("v2!")
    assert triton_fingerprint(triton_dir) != before
    (tmp_path / "README").write_text("not covered")
    after = triton_fingerprint(triton_dir)
    (tmp_path / "README").write_text("still not covered")
    assert triton_fingerprint(triton_dir) == after


def test_saved_key_is_computed_once_per_fingerprint(tmp_path):
    cache_file = str(tmp_path / "sub" / "triton_key.json")
    calls = []

    def compute():
        calls.append(1)
        return f"key{len(calls)}"

    assert saved_key(cache_file, "fp-a", compute) == "key1"
    assert saved_key(cache_file, "fp-a", compute) == "key1"
    assert len(calls) == 1
    assert saved_key(cache_file, "fp-b", compute) == "key2"  # Triton changed
    assert json.load(open(cache_file)) == {"fingerprint": "fp-b", "key": "key2"}
    with open(cache_file, "w") as f:
        f.write("{not json")
    assert saved_key(cache_file, "fp-b", compute) == "key3"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["triton_key.json"]  # no temp files left


def test_unwritable_cache_still_gives_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert saved_key(str(blocker / "triton_key.json"), "fp", lambda: "k") == "k"


SCRIPT = """
import os, sys
from triton.runtime import cache
from torchao_gemlite.kernels.triton_key import use_saved_triton_key
original = cache.triton_key
use_saved_triton_key()
assert cache.triton_key is not original
assert cache.triton_key() == original(), "the saved key differs from Triton's"
print("ok")
"""


def test_installed_key_is_tritons_own(tmp_path):
    """In a fresh process (the install is once a process): the first run stores Triton's key, the
    second reads it back; both equal what Triton computes."""
    env = dict(os.environ, TORCHAO_GEMLITE_CACHE_DIR=str(tmp_path))
    env.pop("TORCHAO_GEMLITE_SAVED_TRITON_KEY", None)
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
    assert (tmp_path / "triton_key.json").exists()
    off = subprocess.run([sys.executable, "-c", "from triton.runtime import cache; f = cache.triton_key\n"
                          "from torchao_gemlite.kernels.triton_key import use_saved_triton_key\n"
                          "use_saved_triton_key(); assert cache.triton_key is f; print('ok')"],
                         env=dict(env, TORCHAO_GEMLITE_SAVED_TRITON_KEY="0"), capture_output=True, text=True,
                         timeout=300)
    assert off.returncode == 0, off.stderr[-2000:]
