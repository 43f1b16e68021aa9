"""What a net holds for its backward pass: bytes of activations saved per training image, counted from the net.

A training step's GPU memory is dominated by the tensors autograd saves during the forward pass (inputs of
convolutions, normalisations, activations, attention weights, dropout masks), linear in the batch. This module
counts them on the CPU for one net: it runs the loss's forward pass at a small batch under
:func:`torch.autograd.graph.saved_tensors_hooks` and sums the distinct storages saved (parameters excluded:
they are counted once, as states, by :mod:`diffmem.plan.memory`). The counts of the configs' nets are kept in
``benchmarks/activations.json`` (``python -m diffmem count-activations``), which the torch-free plan reads.
"""

from __future__ import annotations

from typing import Any

import torch

from diffmem.science import diffusion, nets


def saved_bytes_per_image(model: dict[str, Any], precond: str = "vp", batch: int = 2) -> dict[str, Any]:
    """{"bytes_per_image", "n_params", "net"}: fp32 bytes autograd saves per image in one forward pass of the
    preconditioned net (``precond``) at ``batch`` images, the net's trainable parameters, and its resolved config."""
    resolved = nets.resolve_net_config({k: v for k, v in model.items() if k != "arch" or v != "optimum"})
    torch.manual_seed(0)
    net = nets.build_net(resolved)
    pre = diffusion.make_precond(net, {"precond": precond}).train()
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, resolved["img_channels"], resolved["resolution"], resolved["resolution"], generator=gen)
    sigma = torch.ones(batch)
    labels = None
    if resolved["label_dim"]:
        labels = torch.nn.functional.one_hot(torch.zeros(batch, dtype=torch.long), resolved["label_dim"]).float()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = pre(x, sigma, labels)
        (out.float() ** 2).mean()
    return {"bytes_per_image": sum(saved.values()) / batch, "n_params": nets.count_params(net), "net": resolved}


def count_nets(models: list[dict[str, Any]], key, log=print) -> list[dict[str, Any]]:
    """:func:`saved_bytes_per_image` of each distinct net of ``models`` (distinct by ``key(model)``)."""
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        k = key(model)
        if k in out or model.get("arch") == "optimum":
            continue
        rec = saved_bytes_per_image(model)
        out[k] = rec
        log(f"{rec['bytes_per_image'] / 2**20:8.1f} MiB/image  {rec['n_params']:>11,} params  {k}")
    return list(out.values())
