"""The offline SASS tool (test/kernels/offline_sass.py) keeps working: it compiles a decode kernel for
sm_90 with Triton's bundled ptxas on a machine without a GPU and finds its main loop. It runs in a
process of its own: the test session's Triton interpreter (conftest.py) would replace the compiler."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).with_name("offline_sass.py")


@pytest.mark.parametrize("kernel,args", [("gemv", ["--bits", "4", "--block-k", "256", "--stages", "3"]),
                                         ("mma", ["--bits", "2", "--group", "64", "--block-n", "32", "--warps", "4"])])
def test_offline_sass_counts_the_main_loop(kernel, args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOOL.parents[2]), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(TOOL), kernel, *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f": {kernel} " in run.stdout and " a word" in run.stdout
    assert "HFMA2" in run.stdout  # the packed 16-bit arithmetic is in the loop
