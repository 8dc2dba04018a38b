"""Least-squares refinement of group-wise scales and zeros (what the tensors' ``from_hp`` uses).

The reference quantizer (``quant.quantize_groupwise_codes``) picks min-max (asymmetric) or
absmax (symmetric) parameters: no clipping, but a step that the group's two extreme
values dictate. Here, starting from those, we alternate a few times between rounding the
codes and refitting W ~ (q - zero) * scale by least squares per group (both scale and
zero when asymmetric, the scale alone when symmetric), round the candidates to the
storage dtype, and keep per group whichever of the reference and the refined parameters
reconstructs the group with the smaller squared error. So the result is never worse than
the reference and the packed layout is unchanged. On Gaussian weights with groups of 128,
it adds about 0.5 dB at 4 bits, 3 dB at 2 bits and 10 dB at 1 bit (asymmetric).
"""

from __future__ import annotations

import torch

from ..formats import PackedFormat, symmetric_zero
from .packing import pack_codes
from .quantize import ZERO_BOUND, QuantizedWeight, quantize_groupwise_codes

_ITERATIONS = 6


def _codes(w, scale, zero, max_code):
    return (w / scale + zero).round().clamp(0, max_code)


def _sq_error(w, scale, zero, max_code):
    return ((_codes(w, scale, zero, max_code) - zero) * scale - w).pow(2).sum(-1, keepdim=True)


def quantize_weight_refined(weight: torch.Tensor, bits: int, group_size: int | None,
                            symmetric: bool) -> QuantizedWeight:
    """Like ``quant.quantize_weight`` (same layout and dtypes), with refined scales/zeros."""
    _, ref_scale, ref_zero, fmt = quantize_groupwise_codes(weight, bits, group_size, symmetric)
    n, k = weight.shape
    group, dtype, max_code = fmt.group_size, ref_scale.dtype, fmt.max_code
    w = weight.float().reshape(n, k // group, group)
    best_s = ref_scale.float().unsqueeze(-1)
    best_z = (torch.full_like(best_s, symmetric_zero(bits)) if symmetric else ref_zero.float().unsqueeze(-1))
    best_e = _sq_error(w, best_s, best_z, max_code)
    s, z = best_s, best_z
    tiny = torch.finfo(dtype).tiny
    for _ in range(_ITERATIONS):
        q = _codes(w, s, z, max_code)
        if symmetric:
            centered = q - z
            num, den = (centered * w).sum(-1, keepdim=True), centered.pow(2).sum(-1, keepdim=True)
            ok = (num > 0) & (den > 0)
            s = torch.where(ok, num / den.clamp_min(1e-30), s)
        else:
            q_mean, w_mean = q.mean(-1, keepdim=True), w.mean(-1, keepdim=True)
            cov = ((q - q_mean) * (w - w_mean)).sum(-1, keepdim=True)
            var = (q - q_mean).pow(2).sum(-1, keepdim=True)
            ok = (cov > 0) & (var > 0)
            s = torch.where(ok, cov / var.clamp_min(1e-30), s)
            z = torch.where(ok, q_mean - w_mean / s, z)
        # candidates as they will be stored
        s_stored = s.clamp_min(tiny).to(dtype).float()
        z_stored = z if symmetric else z.clamp(-ZERO_BOUND, ZERO_BOUND).to(dtype).float()
        finite = torch.isfinite(s_stored) & torch.isfinite(z_stored) & (s_stored > 0)
        e = torch.where(finite, _sq_error(w, s_stored, z_stored, max_code), best_e)
        better = e < best_e
        best_s = torch.where(better, s_stored, best_s)
        best_z = torch.where(better, z_stored, best_z)
        best_e = torch.where(better, e, best_e)
    codes = _codes(w, best_s, best_z, max_code).to(torch.uint8).reshape(n, k)
    scale = best_s.squeeze(-1).to(dtype)
    zero = None if symmetric else best_z.squeeze(-1).to(dtype)
    return QuantizedWeight(
        qdata=pack_codes(codes, bits),
        scale=scale.t().contiguous(),
        zero=None if zero is None else zero.t().contiguous(),
        fmt=PackedFormat(bits, group, symmetric),
        shape=(n, k),
    )
