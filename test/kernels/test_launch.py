"""FastLauncher's specialization key (CPU: the launches themselves are tested on the GPU)."""

import torch

from triton import knobs

from torchao_gemlite.kernels.launch import _hooked, _specialization


def test_key_separates_what_triton_specializes_on():
    base = torch.zeros(64, dtype=torch.float16)
    assert _specialization(base) != _specialization(base[1:])  # 16-byte alignment
    assert _specialization(base) != _specialization(base.float())  # dtype
    assert _specialization(1) != _specialization(2)  # 1 is compiled as a constant
    assert _specialization(32) != _specialization(33)  # divisibility by 16
    assert _specialization(2**31) != _specialization(16)  # 64-bit ints
    assert _specialization(None) == (None,)
    assert _specialization(48) == _specialization(4096)


def test_launch_hooks_send_calls_through_triton():
    assert not _hooked(None)
    assert not _hooked(knobs.runtime.launch_enter_hook)  # an empty chain by default
    assert _hooked(lambda metadata: None)
