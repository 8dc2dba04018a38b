"""Tensor parallel with our weights: what fits, checked before sharding.

Our tensors shard like plain weights under ``parallelize_module`` (``ColwiseParallel`` splits
out_features N, ``RowwiseParallel`` splits in_features K), with the default
``src_data_rank=0`` (rank 0's weights are scattered) or ``src_data_rank=None`` (every rank
already holds the full weights and keeps its slice). Two limits come from the packed layout:

* DTensor splits a dimension into equal chunks of ceil(size / tp); it pads an uneven last
  chunk, which a packed weight cannot do: N (colwise) and K (rowwise) must be divisible by tp.
* A K shard keeps whole groups: K / tp must be a multiple of the group size (and of 32).
  ``tp_group_size`` gives the largest group size that fits; quantize with it.

``check_tensor_parallel`` reports every layer of a plan that breaks a limit, before any
collective runs, instead of an error from deep inside DTensor.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..formats import K_ALIGNMENT, MIN_GROUP_SIZE

_COLWISE, _ROWWISE = "ColwiseParallel", "RowwiseParallel"


def tp_group_size(in_features: int, tp_degree: int, group_size: Optional[int] = 128) -> Optional[int]:
    """The largest power-of-two group size <= ``group_size`` that row-wise sharding of
    ``in_features`` over ``tp_degree`` ranks keeps intact; None (per-channel) stays None only
    when tp_degree is 1, since a per-channel group spans the whole unsharded K.

    Raises ValueError when no group size fits (K / tp not a multiple of 32).
    """
    if tp_degree < 1 or in_features % tp_degree:
        raise ValueError(f"in_features={in_features} is not divisible by the tensor parallel degree {tp_degree}")
    local_k = in_features // tp_degree
    if local_k % K_ALIGNMENT:
        raise ValueError(f"in_features / tp = {in_features} / {tp_degree} = {local_k} is not a multiple of "
                         f"{K_ALIGNMENT}: this layer cannot be sharded row-wise at this degree")
    if group_size is None:
        if tp_degree == 1:
            return None
        group_size = local_k
    group = 1 << (min(group_size, local_k).bit_length() - 1)
    while local_k % group:
        group //= 2
    if group < MIN_GROUP_SIZE:
        raise ValueError(f"no group size >= {MIN_GROUP_SIZE} divides in_features / tp = {local_k}")
    return group


def _style_name(style) -> str:
    for cls in type(style).__mro__:
        if cls.__name__ in (_COLWISE, _ROWWISE):
            return cls.__name__
    return type(style).__name__


def _layer_problem(name: str, weight: torch.Tensor, style: str, tp: int) -> Optional[str]:
    n, k = weight.shape
    if style == _COLWISE and n % tp:
        return f"{name}: ColwiseParallel splits out_features={n}, which is not divisible by tp={tp}"
    if style != _ROWWISE:
        return None
    if k % tp:
        return f"{name}: RowwiseParallel splits in_features={k}, which is not divisible by tp={tp}"
    group = getattr(weight, "group_size", None)
    local_k = k // tp
    if group is not None and local_k % group:
        try:
            hint = f"quantize this layer with group_size <= {tp_group_size(k, tp, group)}"
        except ValueError as e:
            hint = str(e)
        return (f"{name}: RowwiseParallel gives each rank in_features / tp = {k} / {tp} = {local_k}, not a "
                f"multiple of group_size={group}{' (per-channel)' if group == k else ''}: {hint}")
    if local_k % K_ALIGNMENT:
        return f"{name}: in_features / tp = {local_k} is not a multiple of {K_ALIGNMENT}"
    return None


def check_tensor_parallel(model: torch.nn.Module, plan: dict, tp_degree: int) -> None:
    """Raises ValueError listing every layer of ``plan`` ({fqn: ColwiseParallel() or
    RowwiseParallel()}, as for ``parallelize_module``) whose quantized weight cannot be
    sharded over ``tp_degree`` ranks, with the fix for each. Plain weights are checked for
    divisibility only; other styles are ignored."""
    problems = []
    for fqn, style in plan.items():
        module = model.get_submodule(fqn)
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        problem = _layer_problem(fqn, weight, _style_name(style), tp_degree)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError("tensor parallel plan does not fit the quantized weights:\n  " + "\n  ".join(problems))
