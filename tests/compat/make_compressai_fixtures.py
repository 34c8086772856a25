"""Writes the CompressAI reference fixtures that tests/compat/test_compressai_import.py reads.

Run with a python that has CompressAI (1.2.8) and torch, e.g. the one that
`benchmarks/make_compressai_env.sh` builds (the tests themselves need no torch):

    /tmp/compressai-venv/bin/python tests/compat/make_compressai_fixtures.py PHOTO.png
    (add --train-step-only to rewrite hyperprior_train.npz alone)

PHOTO is any RGB photograph of at least 256×384 (we used Kodak's kodim23.png); its top-left
256×384 crop is saved as `fixtures/compressai/photo.png`, and the models code its mirror
tiling (512×768, `mirror_tile`). For each architecture
(bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean, mbt2018), a small model (N=8, M=12)
is trained by CompressAI for a few steps on crops of the photograph (so that its latents and
scales are those of a working codec, not of random weights), its entropy bottleneck's medians
are moved off the density's true medians (as an imperfect auxiliary loss leaves them), and it
is saved the way CompressAI users have it — zoo spellings of the bottleneck keys, a training
checkpoint `{"state_dict": ...}`, the zip and the legacy (non-zip) torch formats; the
Gaussian conditional's CDF buffers (800 KB at any N, M) are kept in mbt2018-mean's file only.
CompressAI's own outputs on the 512×768 tiling are in `<arch>.npz`:

- `x_hat`: the eval-mode forward's x̂ (mbt2018: `decompress`'s, which is the sequentially
  decoded ŷ's; its forward's ŷ rounds without the context means), on the window `PATCH`;
- `y_bits`, `z_bits`: −Σ log2 of the likelihoods of that forward (mbt2018: of the decoded ŷ);
- `string_bytes`: the total length of `compress()`'s strings (y and z).

For bmshj2018-hyperprior, `hyperprior_train.npz` holds one training step's inputs and
outputs: a batch (2 × 64² crops), the uniform noise CompressAI drew for z and y (in
channels-last layout), the loss λ·255²·MSE + bpp (λ = 0.0067), and the gradient of every
parameter, under CompressAI's names in torch's layout.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from compressai.models import (
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from PIL import Image

OUT = Path(__file__).with_name("fixtures") / "compressai"
N, M = 8, 12
LMBDA = 0.0067  # the training step's λ
FIT_LMBDA = 0.18  # λ of the brief training (quality 8: enough bits that the streams' constant
# overheads — a few bytes each — do not dominate the 1 % comparison of sizes)
PATCH = (slice(96, 160), slice(144, 240))  # the stored window of x̂ (rows, columns)


def train_briefly(net: torch.nn.Module, x: torch.Tensor, seed: int, steps: int = 300) -> None:
    """A few Adam steps of FIT_LMBDA·255²·MSE + bpp on random 128² crops of x."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for n, p in net.named_parameters() if "quantiles" not in n], 1e-3)
    net.train()
    for _ in range(steps):
        crops = []
        for _ in range(4):
            i = int(torch.randint(0, x.shape[2] - 128 + 1, (1,), generator=g))
            j = int(torch.randint(0, x.shape[3] - 128 + 1, (1,), generator=g))
            crops.append(x[..., i : i + 128, j : j + 128])
        batch = torch.cat(crops, 0)
        out = net(batch)
        n = batch.shape[0] * batch.shape[2] * batch.shape[3]
        bpp = sum(torch.log(v).sum() / (-np.log(2) * n) for v in out["likelihoods"].values())
        loss = FIT_LMBDA * 255**2 * torch.mean((out["x_hat"] - batch) ** 2) + bpp
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Moves the bottleneck's medians off the density's medians; rebuilds CompressAI's tables."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, EntropyBottleneck):
                m._update_quantiles()
                shift = torch.rand(m.channels, generator=g) - 0.5
                m.quantiles[:, 0, 1] += 0.6 * shift
    model.update(force=True)


def mirror_tile(pixels: np.ndarray) -> np.ndarray:
    """[h, w, 3] → [2h, 2w, 3]: the image beside its mirror image, above their flip (the coded
    input; the tests build the same from photo.png)."""
    row = np.concatenate([pixels, pixels[:, ::-1]], axis=1)
    return np.concatenate([row, row[::-1]], axis=0)


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def bits(likelihoods: torch.Tensor) -> float:
    return float(-torch.log2(likelihoods).sum())


def string_bytes(strings) -> int:
    return sum(len(s) for group in strings for s in group)


def zoo_keys(sd: dict) -> OrderedDict:
    """The bottleneck keys as CompressAI 1.1's zoo files spell them (`_matrix0`, ...)."""
    out = OrderedDict()
    for k, v in sd.items():
        for new, old in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
            prefix = f"entropy_bottleneck.{new}"
            if k.startswith(prefix):
                k = f"entropy_bottleneck.{old}{k[len(prefix) :]}"
        out[k] = v
    return out


def main(photo: str, train_step_only: bool = False) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(Image.open(photo).convert("RGB"))[:256, :384]
    Image.fromarray(pixels).save(OUT / "photo.png")
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    big = mirror_tile(pixels).astype(np.float32) / 255.0
    x_big = torch.from_numpy(big).permute(2, 0, 1)[None].contiguous()

    specs = [
        ("bmshj2018-factorized", FactorizedPrior, "zoo"),
        ("bmshj2018-hyperprior", ScaleHyperprior, "train"),
        ("mbt2018-mean", MeanScaleHyperprior, "zip"),
        ("mbt2018", JointAutoregressiveHierarchicalPriors, "legacy"),
    ]
    for seed, (arch, cls, style) in enumerate([] if train_step_only else specs):
        torch.manual_seed(seed)
        net = cls(N, M)
        train_briefly(net, x, seed)
        perturb(net, seed)
        sd = net.state_dict()
        if arch in ("bmshj2018-hyperprior", "mbt2018"):
            sd = OrderedDict(
                (k, v) for k, v in sd.items() if not k.startswith("gaussian_conditional._")
            )
        path = OUT / f"{arch}.pth.tar"
        if style == "zoo":
            torch.save(zoo_keys(sd), path)
        elif style == "train":
            torch.save({"epoch": 7, "state_dict": sd, "loss": 1.5}, path)
        elif style == "legacy":
            torch.save(sd, path, _use_new_zipfile_serialization=False)
        else:
            torch.save(sd, path)

        with torch.no_grad():
            out = net(x_big)
            enc = net.compress(x_big)
            if arch == "mbt2018":
                captured: dict[str, torch.Tensor] = {}

                def keep_input(module, inputs, output, captured=captured):
                    captured["y_hat"] = inputs[0].clone()

                hook = net.g_s.register_forward_hook(keep_input)
                dec = net.decompress(enc["strings"], enc["shape"])
                hook.remove()
                y_hat = captured["y_hat"]
                params = net.h_s(net.entropy_bottleneck.decompress(enc["strings"][1], enc["shape"]))
                ctx = net.context_prediction(y_hat)
                scales, means = net.entropy_parameters(torch.cat((params, ctx), 1)).chunk(2, 1)
                lik = net.gaussian_conditional.likelihood_lower_bound(
                    net.gaussian_conditional._likelihood(y_hat, scales, means)
                )
                x_hat, y_bits = dec["x_hat"], bits(lik)
            else:
                x_hat, y_bits = out["x_hat"], bits(out["likelihoods"]["y"])
        z_bits = bits(out["likelihoods"]["z"]) if "z" in out["likelihoods"] else 0.0
        np.savez(
            OUT / f"{arch}.npz",
            x_hat=to_nhwc(x_hat)[:, PATCH[0], PATCH[1]],
            patch=np.array([PATCH[0].start, PATCH[0].stop, PATCH[1].start, PATCH[1].stop]),
            y_bits=y_bits,
            z_bits=z_bits,
            string_bytes=string_bytes(enc["strings"]),
        )
        psnr = float(-10 * torch.log10(torch.mean((x_hat.clamp(0, 1) - x_big) ** 2)))
        print(
            f"{arch}: {path.stat().st_size} bytes, {psnr:.2f} dB, "
            f"y {y_bits:.1f} z {z_bits:.1f} bits, strings {string_bytes(enc['strings'])} bytes"
        )

    # One training step of bmshj2018-hyperprior with recorded noise.
    torch.manual_seed(1)
    net = ScaleHyperprior(N, M)
    sd = torch.load(OUT / "bmshj2018-hyperprior.pth.tar")["state_dict"]
    fresh = ScaleHyperprior(N, M)
    fresh.update(force=True)  # the Gaussian conditional's buffers, which the file leaves out
    sd.update(
        (k, v) for k, v in fresh.state_dict().items() if k.startswith("gaussian_conditional._")
    )
    net.load_state_dict(sd)
    net.train()
    batch = torch.cat([x[..., :64, :64], x[..., 128:192, 256:320]], 0)
    noise = []
    original = EntropyModel.quantize

    def recording(self, inputs, mode, means=None):
        if mode != "noise":
            return original(self, inputs, mode, means)
        u = torch.empty_like(inputs).uniform_(-0.5, 0.5)
        noise.append((type(self).__name__, u.detach().clone()))
        return inputs + u

    EntropyModel.quantize = recording
    out = net(batch)
    EntropyModel.quantize = original
    num_pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]
    bpp = sum(torch.log(v).sum() / (-np.log(2) * num_pixels) for v in out["likelihoods"].values())
    mse = torch.mean((out["x_hat"] - batch) ** 2)
    loss = LMBDA * 255**2 * mse + bpp
    loss.backward()
    (zname, uz), (yname, uy) = noise
    assert zname == "EntropyBottleneck" and yname == "GaussianConditional", noise
    # The bottleneck draws its noise on [C, 1, B·h·w]; ours is added in [B, h, w, C].
    z_shape = net.h_a(net.g_a(batch)).shape
    uz = uz.reshape(z_shape[1], z_shape[0], z_shape[2], z_shape[3]).permute(1, 2, 3, 0)
    grads = {f"grad/{k}": p.grad.numpy() for k, p in net.named_parameters() if p.grad is not None}
    np.savez(
        OUT / "hyperprior_train.npz",
        x=to_nhwc(batch),
        noise_z=uz.numpy(),
        noise_y=uy.permute(0, 2, 3, 1).numpy(),
        loss=float(loss.detach()),
        bpp=float(bpp.detach()),
        mse=float(mse.detach()),
        lmbda=LMBDA,
        **grads,
    )
    print(f"train step: loss {float(loss):.6f}, {len(grads)} gradients")


if __name__ == "__main__":
    main(sys.argv[1], train_step_only="--train-step-only" in sys.argv)
