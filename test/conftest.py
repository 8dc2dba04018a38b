"""Test setup: without a GPU, Triton kernels run on CPU tensors under Triton's interpreter.

TRITON_INTERPRET is read when ``@triton.jit`` decorates a kernel, so it must be set
before any kernel module is imported; conftest.py is loaded before the test modules.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
