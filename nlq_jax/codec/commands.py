"""`nlq compress`, `nlq decompress` and `nlq init` (see `nlq_jax.cli`).

```
nlq init --model hyperprior --quality 3 --out models/hp3      # untrained weights, for trying
nlq compress photo.png photo.nlq                             # the shipped model
nlq compress photo.png photo.nlq --checkpoint models/hp3
nlq decompress photo.nlq photo.png                           # finds the model by its hash
nlq decompress huge.nlq huge.png --max-memory 8G             # files needing over 4 GiB
nlq compress photo.png photo.nlq --checkpoint rvq --num-stages 2   # an RVQ model's stages
nlq decompress photo.nlq coarse.png --stages 1               # only the first (RVQ files)
nlq compress photo.png photo.nlq --checkpoint rvq --roi face.png   # bits in a region
```

An RVQ model's files are progressive: cut short (a partial download, `head -c`), one decodes
its complete stages, with a warning line (`warning: IN is truncated: decoded 2 of 3 stages`).
`--roi MASK` takes an image of the input's size, the region where a pixel exceeds 127 (in any
channel), for the models whose `compress` takes a region of interest.
"""

from __future__ import annotations

import argparse
import sys
import time

from nlq_jax.errors import NLQError


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Adds the arguments of `command` to its parser."""
    if command == "compress":
        parser.add_argument("input", help="image file (PNG, JPEG, ...)")
        parser.add_argument("output", help="the .nlq file to write")
        parser.add_argument(
            "--checkpoint",
            default="default",
            help="export directory of the model (default: the model shipped with nlq_jax)",
        )
        parser.add_argument(
            "--num-stages",
            type=int,
            help="code only the first stages of an RVQ model (a smaller, coarser file)",
        )
        parser.add_argument(
            "--roi",
            metavar="MASK",
            help="a region of interest: an image (PNG, ...) of the input's size, the region "
            "where a pixel exceeds 127; its bits are spent there (RVQ: every stage inside, "
            "the first outside; the scalar hyperprior models: a finer step inside)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="overwrite OUTPUT even if it is not a .nlq file (without it, an existing OUTPUT "
            "is replaced only if it is a .nlq file or empty); the input image itself, a "
            "directory or a device are never overwritten",
        )
    elif command == "decompress":
        parser.add_argument("input", help=".nlq file")
        parser.add_argument("output", help="image to write (.png)")
        parser.add_argument(
            "--force",
            action="store_true",
            help="overwrite OUTPUT even if nlq did not write it (without it, an existing OUTPUT "
            "is replaced only if it is empty or a PNG/TIFF that nlq decompress wrote); the "
            "input file itself, a directory or a device are never overwritten",
        )
        parser.add_argument(
            "--checkpoint", help="export directory of the model (default: the one that wrote it)"
        )
        parser.add_argument(
            "--stages",
            type=int,
            metavar="N",
            help="decode only the first N stages of an RVQ model's (progressive) file",
        )
        parser.add_argument(
            "--max-memory",
            type=memory_size,
            metavar="SIZE",
            help="refuse files whose decoding needs more memory than this, e.g. 512M, 16G "
            "(bytes, or K/M/G/T in powers of 1024; default 4G)",
        )
    elif command == "init":
        parser.add_argument("--model", required=True, help="a model name (see nlq_jax.models)")
        parser.add_argument("--quality", type=int, default=3, help="CompressAI quality 1..8")
        parser.add_argument("--seed", type=int, default=0, help="initialization seed")
        parser.add_argument("--out", required=True, help="export directory to write")
    quiet = "print nothing on success"
    if command == "decompress":
        quiet += " (a truncated file's warning still prints)"
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet)


def memory_size(text: str) -> int:
    """`--max-memory`'s value: bytes, or a number with K, M, G or T (powers of 1024; an
    optional "iB" or "B" after it), e.g. "512M", "1.5G", "8GiB"."""
    units = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in "KMGT" else ""
    try:
        value = float(number[: len(number) - len(unit)]) * 1024 ** units[unit]
    except ValueError:
        value = -1.0
    if not 0 < value < 1 << 60:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 512M, 16G)")
    return int(value)


def run(args: argparse.Namespace) -> int:
    """Runs the command; errors a user can cause are raised as NLQError."""
    enable_compilation_cache()
    return {"compress": _compress, "decompress": _decompress, "init": _init}[args.command](args)


def enable_compilation_cache() -> None:
    """Keeps compiled transforms between runs (under NLQ_HOME), so the second `nlq compress`
    of a size does not compile again. JAX_COMPILATION_CACHE_DIR, if set, wins."""
    import os

    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        from nlq_jax.codec.api import nlq_home

        jax.config.update("jax_compilation_cache_dir", str(nlq_home() / "jax_cache"))


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _prefix_stages(codec) -> int:
    """S when the codec's files decode from any prefix of S stages (a progressive model whose
    quantizer is `prefix_decodable`, e.g. nlq with an rvq quantizer), else 0."""
    stages = getattr(codec.module, "prefix_stages", None)
    return stages(codec.model) if codec.progressive and stages is not None else 0


def _compress(args) -> int:
    import warnings

    from PIL import Image

    from nlq_jax.codec import files
    from nlq_jax.codec.api import MAX_PIXELS, Codec
    from nlq_jax.codec.image_io import load_image

    files.check_output(
        args.output, args.input, force=args.force, is_ours=_is_nlq_file, kind="a .nlq file"
    )
    with warnings.catch_warnings():
        # Pillow warns of images over its own pixel limit; the codec's, far lower, refuses them.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = load_image(args.input, max_pixels=MAX_PIXELS)
    for note in image.notes:
        _say(args, f"note: {note}")
    codec = Codec.load(args.checkpoint)
    options = {}
    if args.num_stages is not None:
        stages = _prefix_stages(codec)
        if not stages:
            raise NLQError("--num-stages applies to an RVQ model (nlq with quantizer=rvq)")
        if not 1 <= args.num_stages <= stages:
            raise NLQError(f"--num-stages must be in 1..{stages} for this model")
        options["num_stages"] = args.num_stages
    if args.roi is not None:
        options["roi"] = _roi_mask(args, codec, image.pixels.shape[:2])
    start = time.perf_counter()
    try:
        data = codec.compress(image.pixels, channels=image.channels, **options)
    except ValueError as e:
        if "roi" not in options:
            raise
        models = _roi_models()
        raise NLQError(f"--roi: {e} (models with region-of-interest coding: {models})") from None
    seconds = time.perf_counter() - start
    files.write_atomic(args.output, data)
    h, w = image.pixels.shape[:2]
    _say(
        args,
        f"{args.output}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, {seconds:.2f} s",
    )
    return 0


def _decompress(args) -> int:
    from nlq_jax.codec import container, files
    from nlq_jax.codec.api import MAX_PIXELS, Codec, find_checkpoint
    from nlq_jax.codec.image_io import save_image, written_by_nlq

    files.check_output(
        args.output, args.input, force=args.force, is_ours=written_by_nlq,
        kind="an image nlq decompress wrote",
    )  # fmt: skip
    data = container.read_file(args.input)
    # A bad file fails before a model loads.
    header, _, _ = container.unpack_partial(data, max_pixels=MAX_PIXELS)
    checkpoint = args.checkpoint or find_checkpoint(data)
    codec = Codec.load(checkpoint)
    if args.stages is not None:
        stages = _prefix_stages(codec)
        if not stages:
            raise NLQError("--stages applies to an RVQ model's file (nlq with quantizer=rvq)")
        if not 1 <= args.stages <= stages:
            raise NLQError(f"--stages must be in 1..{stages} for this model")
    start = time.perf_counter()
    progress = codec.progress(data, num_stages=args.stages, max_memory=args.max_memory)
    pixels = codec.decompress(data, max_memory=args.max_memory, num_stages=args.stages)
    seconds = time.perf_counter() - start
    save_image(args.output, pixels, channels=header.channels)
    if progress.truncated:
        print(
            f"warning: {args.input} is truncated: decoded {progress.decoded} of "
            f"{progress.declared} stages",
            file=sys.stderr,
        )
    _say(args, f"{args.output}: {header.width}×{header.height}, {seconds:.2f} s")
    return 0


def _init(args) -> int:
    import functools

    import jax
    import numpy as np

    from nlq_jax import models
    from nlq_jax.codec.api import Codec

    try:
        module = models.get_module(args.model)
        kwargs = module.get_default_sizes(args.quality)
    except ValueError as e:
        raise NLQError(str(e)) from None
    model = module.Model(**kwargs)
    x = np.zeros((1, model.stride, model.stride, 3), np.float32)
    rngs = {
        "params": jax.random.PRNGKey(args.seed),
        "noise": jax.random.PRNGKey(0),
        "quantizer": jax.random.PRNGKey(1),
    }
    # One compiled program instead of ≈200 small ones of an eager init (≈5 s against 25–50 s).
    variables = dict(jax.jit(functools.partial(model.init, training=True))(rngs, x))
    params = variables.pop("params")
    label = f"{args.model}-q{args.quality}-untrained"
    path = Codec(args.model, kwargs, params, label=label, model_state=variables).save(args.out)
    _say(args, f"{path}: untrained {args.model} (quality {args.quality}, {kwargs})")
    return 0


def _roi_mask(args, codec, shape: tuple[int, int]):
    """`--roi`'s image → a bool mask of the input's size, or one NLQError line."""
    from nlq_jax import models
    from nlq_jax.codec.api import MAX_PIXELS
    from nlq_jax.codec.image_io import load_image
    from nlq_jax.errors import ImageError

    if "roi" not in models.coding_options(codec.model):
        raise NLQError(
            f"--roi: model {codec.model_name!r} has no region-of-interest coding (models that "
            f"have: {_roi_models()})"
        )
    try:
        pixels = load_image(args.roi, max_pixels=MAX_PIXELS).pixels
    except ImageError as e:
        raise NLQError(f"--roi: {e}") from None
    if pixels.shape[:2] != shape:
        h, w = pixels.shape[:2]
        raise NLQError(
            f"--roi: {args.roi} is {w}×{h}, the image {args.input} is {shape[1]}×{shape[0]}"
        )
    return pixels.max(axis=-1) > 127


def _roi_models() -> str:
    """The models whose default configuration codes a region of interest (`roi=`)."""
    from nlq_jax import models

    return ", ".join(models.models_with("roi"))


def _is_nlq_file(path: str) -> bool:
    from nlq_jax.codec import container

    try:
        with open(path, "rb") as f:
            return f.read(len(container.MAGIC)) == container.MAGIC
    except OSError:
        return False
