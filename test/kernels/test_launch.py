"""FastLauncher's specialization key (CPU: the launches themselves are tested on the GPU)."""

import torch

from triton import knobs
from triton.tools.tensor_descriptor import TensorDescriptor

from torchao_gemlite.kernels import launch
from torchao_gemlite.kernels.launch import FastLauncher, _hooked, _specialization


def test_key_separates_what_triton_specializes_on():
    base = torch.zeros(64, dtype=torch.float16)
    assert _specialization(base) != _specialization(base[1:])  # 16-byte alignment
    assert _specialization(base) != _specialization(base.float())  # dtype
    assert _specialization(1) != _specialization(2)  # 1 is compiled as a constant
    assert _specialization(32) != _specialization(33)  # divisibility by 16
    assert _specialization(2**31) != _specialization(16)  # 64-bit ints
    assert _specialization(None) == (None,)
    assert _specialization(48) == _specialization(4096)


def test_key_separates_tensor_descriptors():
    """TMA descriptors (dynamic_tma_gemm.py): by dtype and block shape, which Triton specializes on."""
    a = torch.zeros(64, 256, dtype=torch.int8)
    desc = TensorDescriptor.from_tensor(a, [16, 64])
    assert _specialization(desc) == _specialization(TensorDescriptor.from_tensor(a.clone(), [16, 64]))
    assert _specialization(desc) != _specialization(TensorDescriptor.from_tensor(a, [32, 64]))
    assert _specialization(desc) != _specialization(TensorDescriptor.from_tensor(a.view(torch.uint8), [16, 64]))


def test_launch_hooks_send_calls_through_triton():
    assert not _hooked(None)
    assert not _hooked(knobs.runtime.launch_enter_hook)  # an empty chain by default
    assert _hooked(lambda metadata: None)


def test_direct_launch_can_be_switched_off(monkeypatch):
    """TORCHAO_GEMLITE_DIRECT_LAUNCH=0: every call goes through kernel[grid], nothing is kept."""
    calls = []

    class FakeKernel:
        arg_names = ["x", "N", "BLOCK"]

        def __getitem__(self, grid):
            return lambda *args, **meta: calls.append((grid, args, meta))

    monkeypatch.setattr(launch, "INTERPRETED", False)
    monkeypatch.setattr(launch, "DIRECT", False)
    launcher = FastLauncher(FakeKernel())
    for _ in range(2):
        launcher((4,), (torch.zeros(8), 8), {"BLOCK": 16, "num_warps": 4})
    assert len(calls) == 2 and not launcher.compiled
    assert calls[0] == ((4,), calls[0][1], {"BLOCK": 16, "num_warps": 4})
