"""The peer side of the benchmarks: CompressAI models timed in their own interpreter.

Run by the benchmark scripts with the python of a CompressAI virtualenv
(`benchmarks/make_compressai_env.sh` builds one); prints one JSON object. Random weights: the
pretrained ones cannot be downloaded here, and speed does not depend on them much.

  python compressai_side.py codec --image IMG.png --models bmshj2018-hyperprior --repeats 5
      [--save-dir DIR]   (the models' state dicts, for codec_speed.py --same-weights)
  python compressai_side.py train --model bmshj2018-hyperprior --batch 8 --size 256 --steps 5
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image


def _model(name: str, quality: int):
    from compressai.zoo import image_models

    torch.manual_seed(0)
    return image_models[name](quality=quality, pretrained=False).eval()


def codec(args) -> dict:
    x = np.asarray(Image.open(args.image).convert("RGB"), np.float32) / 255.0
    x = torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()
    h, w = x.shape[2:]
    out = {}
    for name in args.models:
        net = _model(name, args.quality)
        net.update(force=True)
        if args.save_dir:  # the same weights for our side (`nlq import compressai`)
            torch.save(net.state_dict(), f"{args.save_dir}/{name}.pth.tar")
        pad_h, pad_w = (-h) % 64, (-w) % 64
        xp = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        enc, dec, size = [], [], 0
        with torch.no_grad():
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                c = net.compress(xp)
                t1 = time.perf_counter()
                net.decompress(c["strings"], c["shape"])
                t2 = time.perf_counter()
                enc.append(t1 - t0)
                dec.append(t2 - t1)
                size = sum(len(s[0]) for s in c["strings"])
        out[name] = {
            "compress_s": statistics.median(enc),
            "decompress_s": statistics.median(dec),
            "bytes": size,
        }
    return out


def train(args) -> dict:
    from compressai.losses import RateDistortionLoss

    net = _model(args.model, args.quality).train()
    crit = RateDistortionLoss(lmbda=0.0067)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    aux_opt = torch.optim.Adam(
        net.aux_parameters()
        if hasattr(net, "aux_parameters")
        else [p for n, p in net.named_parameters() if n.endswith("quantiles")],
        lr=1e-3,
    )
    x = torch.rand(args.batch, 3, args.size, args.size)
    times = []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        aux_opt.zero_grad()
        loss = crit(net(x), x)["loss"]
        loss.backward()
        opt.step()
        net.aux_loss().backward()
        aux_opt.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])
    return {
        args.model: {"step_s": step, "images_per_s": args.batch / step, "step_times": times[1:]}
    }


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("codec")
    c.add_argument("--image", required=True)
    c.add_argument("--models", nargs="+", required=True)
    c.add_argument("--quality", type=int, default=3)
    c.add_argument("--repeats", type=int, default=5)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--save-dir", help="also save each model's state dict here")
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--quality", type=int, default=3)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--size", type=int, default=256)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = codec(args) if args.cmd == "codec" else train(args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
