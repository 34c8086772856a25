"""Writes the PyTorch checkpoints that `test_torch_checkpoint.py` reads, and their expected values.

Run once, with a Python that has torch (the tests themselves never import it):

    /path/to/torch-venv/bin/python tests/compat/make_torch_fixtures.py

Writes into tests/compat/fixtures/:
  small_zip.pth         a small state dict, `torch.save` zip format (torch >= 1.6 default)
  small_legacy.pth      the same, `_use_new_zipfile_serialization=False` (legacy format)
  train_ckpt.pth.tar    {"epoch", "state_dict", "optimizer" (Adam after one step), "loss"}
  expected.npz          each tensor of the state dict as `tensor.numpy()`
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def small_state_dict() -> collections.OrderedDict:
    """A few tiny tensors of each common dtype, with the layouts `torch.save` keeps as they are:
    a transposed (non-contiguous) tensor, two views of one storage, a 0-d tensor."""
    g = torch.Generator().manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7.0
    shared = torch.arange(10, dtype=torch.int64) * 3 - 7
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(2, 3, 3, 3, generator=g)  # float32, contiguous
    sd["conv.bias"] = torch.randn(2, generator=g, dtype=torch.float64)
    sd["half"] = torch.randn(3, 2, generator=g).to(torch.float16)
    sd["transposed"] = base.t()  # non-contiguous: strides (1, 6)
    sd["shared.full"] = shared
    sd["shared.slice"] = shared[2:9:3]  # a strided view into the same storage, offset 2
    sd["counts"] = torch.tensor([0, 1, 255, 7], dtype=torch.uint8)
    sd["mask"] = torch.tensor([[True, False], [False, True]])
    sd["scalar"] = torch.tensor(2.5)  # 0-d
    sd["step"] = torch.tensor(42, dtype=torch.int64)  # 0-d int
    sd._metadata = collections.OrderedDict([("conv", {"version": 1})])  # as Module.state_dict()
    return sd


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    sd = small_state_dict()
    torch.save(sd, FIXTURES / "small_zip.pth")
    torch.save(sd, FIXTURES / "small_legacy.pth", _use_new_zipfile_serialization=False)

    param = torch.nn.Parameter(sd["conv.weight"].clone())
    bias = torch.nn.Parameter(sd["conv.bias"].float().clone())
    opt = torch.optim.Adam([param, bias], lr=1e-3)
    loss = (param**2).sum() + bias.sum()
    loss.backward()
    opt.step()
    ckpt = {"epoch": 3, "state_dict": sd, "optimizer": opt.state_dict(), "loss": 0.5}
    torch.save(ckpt, FIXTURES / "train_ckpt.pth.tar")

    np.savez(FIXTURES / "expected.npz", **{k: v.numpy() for k, v in sd.items()})
    for name in ("small_zip.pth", "small_legacy.pth", "train_ckpt.pth.tar", "expected.npz"):
        print(f"{name}: {(FIXTURES / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
