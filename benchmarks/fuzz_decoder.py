"""A structure-aware fuzzer of the .nlq decoder, for every model, with a timeout and a memory cap.

    nice python benchmarks/fuzz_decoder.py --cases 100000 --workdir /tmp/nlq-fuzz
    python benchmarks/fuzz_decoder.py --report --workdir /tmp/nlq-fuzz     # the table again
    python benchmarks/fuzz_decoder.py --replay 12345 --workdir /tmp/nlq-fuzz  # one case, here
    python benchmarks/fuzz_decoder.py --calibrate                          # decode_memory vs RSS

Targets: small untrained exports (random weights, fixed seeds, N = 32) of every model in
`nlq_jax.models`, `nlq` once per quantizer and `vqvae2` with VQ and RVQ (`TARGETS`); their valid
files (a few images; for the RVQ model a prefix file and a region-of-interest file) are the
seeds. Case i is a pure function of (`--seed`, i): target i mod len(TARGETS), a seed file,
then 1–3 mutations of its structure (`MUTATIONS`: header fields, declared sizes, a
declared-size bomb with empty or one-word streams, the stream count and lengths, streams
spliced from other files, duplicated, removed, emptied, truncated, extended, bit-flipped,
randomized or reordered, an RVQ stage map's first byte, the flags (a file of any model made
progressive), the domain byte and the shape's rank, the file cut short, a raw byte),
serialized with recomputed CRCs (version 1's, or versions 2 and 3's per header and stream) so
that the damage reaches the decoder. Seeds are version 3 (what `pack` writes); the "version"
mutation may rewrite one in the layout of version 1 or 2.

Cases run in one worker subprocess (`--worker`), which decodes each with
`Codec.decompress(data, max_memory=--max-memory)` and reports its outcome: decoded, a clean
error (an `NLQError`, by type), or an uncaught exception. The parent counts a case whose result
does not come within `--timeout` seconds as a hang, and a case during which the worker's RSS
grew by more than the budget (its peak, from /proc/self/status VmHWM reset before each case,
against its RSS before) as over memory; it kills the worker when its RSS passes a hard cap (its
RSS before the case + the budget + `--rss-slack`) and restarts it from the next case. Findings
go to `findings.jsonl`; each chunk's counts to `chunk-<start>.json` (written as it goes: an
interrupted run keeps its counts, and `--start` resumes), which `--report` sums.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

# The models under test: name, constructor arguments (small, so that the fuzz is fast).
_NLQ = {"N": 32, "latent_dim": 16, "codebook_size": 64, "kmeans_init": False}
_GDN = {"N": 32, "M": 48}
TARGETS = {
    "factorized": ("factorized", _GDN),
    "hyperprior": ("hyperprior", _GDN),
    "mean_scale": ("mean_scale", _GDN),
    "joint": ("joint", _GDN),
    "checkerboard": ("checkerboard", _GDN),
    "channelwise": ("channelwise", {**_GDN, "num_slices": 4, "max_support_slices": 2}),
    "nlq_vq": ("nlq", {**_NLQ, "quantizer": "vq"}),
    "nlq_rvq": ("nlq", {**_NLQ, "quantizer": "rvq", "num_stages": 3}),
    "nlq_pvq": ("nlq", {**_NLQ, "quantizer": "pvq", "groups": 2}),
    "nlq_fsq": ("nlq", {**_NLQ, "quantizer": "fsq", "levels": (8, 5, 5, 5)}),
    "nlq_scalar": ("nlq", {**_NLQ, "quantizer": "scalar", "levels": (7,)}),
    "nlq_gumbel": ("nlq", {**_NLQ, "quantizer": "gumbel"}),
    "vqvae2": ("vqvae2", {**_NLQ, "quantizer": "vq"}),
    "vqvae2_rvq": ("vqvae2", {**_NLQ, "quantizer": "rvq", "num_stages": 2}),
}
# Seed images (height, width): odd sizes, one below the stride; few distinct padded sizes.
SEED_SHAPES = ((64, 64), (30, 50), (1, 1))
# Declared sides a mutation picks from: few distinct padded sizes (each is compiled once per
# target), the container's limits, and sizes whose decoding the budget must refuse.
SIDES = (0, 1, 17, 65, 1000, 4096, 65535, 65536, (1 << 32) - 1)
BOMBS = ((2048, 2048), (4096, 4096), (218, 65489), (65535, 256), (1024, 1024))
OUTCOME_ORDER = ("decoded", "error", "uncaught", "hang", "over memory", "crash")


# The file's fields, serialized without any validation (unlike `container.pack`).
def parse(data: bytes) -> dict:
    """A valid .nlq file, version 1, 2 or 3 → its fields (see `nlq_jax.codec.container`); an
    image's `shape` is [height, width, channels]."""
    n = data[5]
    name = data[6 : 6 + n]
    layout = data[4]
    if layout == 3:
        model_hash, domain, rank = struct.unpack_from("<16sBB", data, 6 + n)
        shape = list(struct.unpack_from(f"<{rank}I", data, 24 + n))
        at = 24 + n + 4 * rank
        flags, k = data[at], data[at + 1]
        at += 2
    else:
        model_hash, h, w, channels, k = struct.unpack_from("<16sIIBB", data, 6 + n)
        domain, shape = 0, [h, w, channels]
        at = 6 + n + 26
        flags = data[at] if layout == 2 else 0
        at += layout == 2
    crc = 4 if layout >= 2 else 0  # versions 2, 3: a CRC after the lengths and each stream
    lengths = list(struct.unpack_from(f"<{k}I", data, at))
    streams, at = [], at + 4 * k + crc
    for length in lengths:
        streams.append(data[at : at + length])
        at += length + crc
    return {"version": data[4], "layout": layout, "flags": flags, "name": name,
            "hash": model_hash, "domain": domain, "shape": shape, "count": None,
            "lengths": None, "streams": streams, "cut": 0}  # fmt: skip


def serialize(f: dict) -> bytes:
    """Fields → bytes with valid CRCs, in the layout of version `layout` (whatever the version
    byte says); `count` / `lengths` None: those of the streams; then `cut` bytes cut off.
    Versions 1 and 2 write the shape's first two sizes and its last (1 if it has fewer)."""
    streams = f["streams"]
    count = len(streams) if f["count"] is None else f["count"]
    lengths = [len(s) for s in streams] if f["lengths"] is None else f["lengths"]
    shape = f["shape"]
    if f["layout"] == 3:
        sizes = bytes([f["domain"] & 255, len(shape) & 255]) + b"".join(
            struct.pack("<I", n & 0xFFFFFFFF) for n in shape
        )
        tail = bytes([f["flags"] & 255, count & 255])
    else:
        h, w, c = [*shape[:2], 1, 1][:2] + [shape[-1] if shape else 1]
        sizes = struct.pack("<II", h & 0xFFFFFFFF, w & 0xFFFFFFFF) + bytes([c & 255])
        tail = bytes([count & 255]) + (bytes([f["flags"] & 255]) if f["layout"] == 2 else b"")
    head = b"".join([
        b"\x89NLQ", bytes([f["version"] & 255, len(f["name"]) & 255]), f["name"],
        f["hash"], sizes, tail, b"".join(struct.pack("<I", n & 0xFFFFFFFF) for n in lengths),
    ])  # fmt: skip
    if f["layout"] >= 2:
        out = head + struct.pack("<I", zlib.crc32(head))
        for stream in streams:
            out += stream
            out += struct.pack("<I", zlib.crc32(out))
    else:
        body = head + b"".join(streams)
        out = body + struct.pack("<I", zlib.crc32(body))
    return out[: len(out) - f["cut"]]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _stream_index(rng, f) -> int | None:
    return int(rng.integers(len(f["streams"]))) if f["streams"] else None


def _edit_stream(f, rng, edit) -> None:
    i = _stream_index(rng, f)
    if i is not None:
        f["streams"][i] = edit(f["streams"][i])


def _truncate(rng, s: bytes) -> bytes:
    n = int(rng.integers(len(s) + 1))
    return s[: n - n % 4] if rng.random() < 0.5 else s[:n]


def _extend(rng, s: bytes) -> bytes:
    words = int(rng.integers(1, 9))
    return s + (bytes(4 * words) if rng.random() < 0.5 else rng.bytes(4 * words))


def _flip(rng, s: bytes) -> bytes:
    if not s:
        return s
    b = bytearray(s)
    for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
    return bytes(b)


def _random_words(rng, s: bytes) -> bytes:
    return rng.bytes(max(4, len(s) - len(s) % 4))


def _bomb(f, rng, pool) -> None:
    f["shape"][:2] = _pick(rng, BOMBS)
    word = _pick(rng, (b"", bytes(4), b"\xff" * 4))
    f["streams"] = [word for _ in f["streams"]]


def _size(f, axis: int, value: int) -> None:
    if len(f["shape"]) > abs(axis) - (axis < 0):
        f["shape"][axis] = value


def _version(f, rng, pool) -> None:
    """Another version byte; 1 or 2 sometimes also rewrites the file in that version's layout."""
    version = _pick(rng, (0, 1, 2, 4, 255))
    rewrite = version in (1, 2) and rng.random() < 0.5
    f.update(version=version, layout=version if rewrite else f["layout"])


def _rank(f, rng, pool) -> None:
    """A shape of another rank: a size dropped or added, or a rank byte of no sizes."""
    edit = int(rng.integers(3))
    if edit == 0 and f["shape"]:
        f["shape"].pop(int(rng.integers(len(f["shape"]))))
    elif edit == 1:
        f["shape"].insert(int(rng.integers(len(f["shape"]) + 1)), _pick(rng, (1, 2, 3, 64)))
    else:
        f["shape"] = [1] * _pick(rng, (0, 8, 9, 255))


def _stages(f, rng, pool) -> None:
    if f["streams"] and f["streams"][0]:
        byte = _pick(rng, (0, 1, 2, 3, 4, 255))
        f["streams"][0] = bytes([byte]) + f["streams"][0][1:]


# name → mutation(fields, rng, pool of other seed files' fields).
MUTATIONS = {
    "version": _version,
    "name": lambda f, rng, pool: f.update(
        name=_pick(rng, (b"", b"Hyperprior", b"x" * 65, b"nlq", b"factorized", rng.bytes(5)))
    ),
    "hash": lambda f, rng, pool: f.update(hash=_flip(rng, f["hash"])),
    "height": lambda f, rng, pool: _size(f, 0, _pick(rng, SIDES)),
    "width": lambda f, rng, pool: _size(f, 1, _pick(rng, SIDES)),
    "size_bomb": _bomb,
    "channels": lambda f, rng, pool: _size(f, -1, _pick(rng, (0, 1, 2, 3, 4, 255))),
    "domain": lambda f, rng, pool: f.update(domain=_pick(rng, (0, 1, 2, 255))),
    "rank": _rank,
    "count": lambda f, rng, pool: f.update(
        count=_pick(rng, (0, 1, len(f["streams"]) - 1, len(f["streams"]) + 1, 32, 33, 255))
    ),
    "length": lambda f, rng, pool: _declared_length(f, rng),
    "splice": lambda f, rng, pool: _splice(f, rng, pool),
    "duplicate": lambda f, rng, pool: _duplicate(f, rng),
    "remove": lambda f, rng, pool: (
        f["streams"].pop(_stream_index(rng, f) or 0) if f["streams"] else None
    ),
    "empty": lambda f, rng, pool: _edit_stream(f, rng, lambda s: b""),
    "truncate": lambda f, rng, pool: _edit_stream(f, rng, lambda s: _truncate(rng, s)),
    "extend": lambda f, rng, pool: _edit_stream(f, rng, lambda s: _extend(rng, s)),
    "bitflip": lambda f, rng, pool: _edit_stream(f, rng, lambda s: _flip(rng, s)),
    "randomize": lambda f, rng, pool: _edit_stream(f, rng, lambda s: _random_words(rng, s)),
    "reorder": lambda f, rng, pool: f["streams"].reverse(),
    "stages": _stages,
    "flags": lambda f, rng, pool: f.update(
        flags=_pick(rng, (0, 1, 2, 255)),
        **({} if f["layout"] >= 2 else {"version": 2, "layout": 2}),
    ),
    "cut": lambda f, rng, pool: f.update(cut=_pick(rng, (1, 3, 4, 5, 8, 17, 64, 200))),
}


def _declared_length(f, rng) -> None:
    lengths = [len(s) for s in f["streams"]]
    if lengths:
        i = int(rng.integers(len(lengths)))
        n = lengths[i]
        lengths[i] = _pick(rng, (0, n - 1, n + 1, n - 4, n + 4, (1 << 32) - 1, 1 << 31))
    f["lengths"] = lengths


def _splice(f, rng, pool) -> None:
    other = _pick(rng, pool)
    if other["streams"] and f["streams"]:
        f["streams"][_stream_index(rng, f)] = _pick(rng, other["streams"])


def _duplicate(f, rng) -> None:
    i = _stream_index(rng, f)
    if i is not None:
        f["streams"].insert(i, f["streams"][i])


def mutate(data: bytes, pool: list[bytes], rng: np.random.Generator) -> tuple[list[str], bytes]:
    """1–3 random `MUTATIONS` of a valid file (splices take streams from `pool`'s files), and
    sometimes a raw byte, behind a recomputed CRC: (the mutations' names, the bytes)."""
    f = parse(data)
    others = [parse(d) for d in pool]
    applied = []
    for _ in range(int(rng.integers(1, 4))):
        name = _pick(rng, list(MUTATIONS))
        MUTATIONS[name](f, rng, others)
        applied.append(name)
    data = serialize(f)
    if rng.random() < 0.05:
        b = bytearray(data[:-4])
        if b:
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        data = bytes(b) + struct.pack("<I", zlib.crc32(bytes(b)))
        applied.append("raw_byte")
    return applied, data


def make_case(seeds: dict[str, list[bytes]], seed: int, index: int) -> tuple[str, list, bytes]:
    """Case `index`: (target, the mutations applied, the file's bytes); a pure function."""
    rng = np.random.default_rng([seed, index])
    labels = list(TARGETS)
    target = labels[index % len(labels)]
    data = _pick(rng, seeds[target])
    # Splices take streams of this target's other files (their lengths fit) or any target's.
    pool = seeds[target if rng.random() < 0.7 else _pick(rng, labels)]
    applied, data = mutate(data, pool, rng)
    return target, applied, data


# The targets' exports and seed files, made once per workdir.
def _key(seed: int):
    import jax

    return jax.random.key(seed, impl="rbg")


def make_codec(label: str):
    """Target `label` with random weights (seed 0): a `Codec`."""
    name, kwargs = TARGETS[label]
    return random_codec(name, kwargs, f"fuzz-{label}")


def random_codec(name: str, kwargs: dict, label: str):
    """Model `name` of these sizes with random weights (seed 0): a `Codec`."""
    import jax

    from nlq_jax import models, quantizers
    from nlq_jax.codec.api import Codec

    # `TARGETS` keeps the quantizer's options flat (as `seed_files` reads them); the models
    # take them as a sub-dict.
    kwargs = quantizers.from_legacy_kwargs(name, kwargs)
    model = models.get_model(name, **kwargs)
    x = np.zeros((1, model.stride, model.stride, 3), np.float32)
    init = jax.jit(functools.partial(model.init, training=True))
    variables = dict(init({"params": _key(0), "noise": _key(1), "quantizer": _key(2)}, x))
    params = variables.pop("params")
    return Codec(name, kwargs, params, label=label, model_state=variables)


def seed_files(label: str, codec, shapes=SEED_SHAPES) -> list[bytes]:
    """Valid files of target `label`: random images of `shapes`, and an RVQ prefix file."""
    rng = np.random.default_rng(0)
    files = []
    for h, w in shapes:
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        files.append(codec.compress(noise))
    name, kwargs = TARGETS[label]
    if kwargs.get("quantizer") == "rvq" and name == "nlq":
        files.append(codec.compress(noise, num_stages=1))
        roi = np.zeros(noise.shape[:2], bool)
        roi[:, : noise.shape[1] // 2] = True
        files.append(codec.compress(noise, roi=roi))
    return files


def build_targets(workdir: Path) -> None:
    """Writes each target's export and seed files under workdir (once)."""
    for label in TARGETS:
        out = workdir / "targets" / label
        if (out / "seeds.done").exists():
            continue
        codec = make_codec(label)
        codec.save(out / "export")
        for i, data in enumerate(seed_files(label, codec)):
            (out / f"seed{i}.nlq").write_bytes(data)
        (out / "seeds.done").write_text("")
        print(f"built {label}", file=sys.stderr, flush=True)


def load_seeds(workdir: Path) -> dict[str, list[bytes]]:
    return {
        label: [p.read_bytes() for p in sorted((workdir / "targets" / label).glob("seed*.nlq"))]
        for label in TARGETS
    }


# The worker: decodes cases, one JSON line each.
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_case(codecs: dict, seeds: dict, seed: int, index: int, budget: int) -> dict:
    """Decodes case `index` and classifies the outcome (in the worker)."""
    from nlq_jax.errors import NLQError

    target, applied, data = make_case(seeds, seed, index)
    codec = codecs[target]
    exact_peak = _reset_peak()
    before = _status("VmRSS")
    start = time.perf_counter()
    result = {"i": index, "target": target, "mutations": applied}
    try:
        pixels = codec.decompress(data, max_memory=budget)
        header = codec.decode_header(data, max_memory=budget)[0]
        if pixels.dtype != np.uint8 or pixels.shape != (header.height, header.width, 3):
            raise AssertionError(f"decoded {pixels.dtype} {pixels.shape} for {header}")
        result.update(outcome="decoded", estimate=codec.decode_memory(header.height, header.width))
    except NLQError as e:
        result.update(outcome="error", type=type(e).__name__, message=str(e)[:200])
    except Exception as e:  # noqa: BLE001 (what the fuzzer looks for)
        result.update(
            outcome="uncaught",
            type=type(e).__name__,
            message=str(e)[:500],
            traceback=traceback.format_exc()[-3000:],
        )
    result["seconds"] = time.perf_counter() - start
    result["growth"] = _status("VmHWM") - before if exact_peak else None
    result["rss"] = _status("VmRSS")
    if result["growth"] is not None and result["growth"] > budget:
        result.update(outcome="over memory")
    return result


def worker(args) -> None:
    """Reads "start end" lines; writes one JSON line per case, then "DONE"."""
    from nlq_jax.codec.api import Codec

    workdir = Path(args.workdir)
    seeds = load_seeds(workdir)
    codecs = {label: Codec.load(workdir / "targets" / label / "export") for label in TARGETS}
    print(json.dumps({"ready": True, "rss": _status("VmRSS")}), flush=True)
    for line in sys.stdin:
        start, end = (int(v) for v in line.split())
        for i in range(start, end):
            print(json.dumps(run_case(codecs, seeds, args.seed, i, args.max_memory)), flush=True)
        print(json.dumps({"done": True}), flush=True)


# The parent: runs the worker, watches time and memory, counts.
class Worker:
    def __init__(self, args):
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")
        env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(args.workdir) / "jax_cache"))
        # Cache every compiled shape, so that a restarted worker does not compile them again.
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        cmd = [sys.executable, __file__, "--worker", "--workdir", args.workdir,
               "--seed", str(args.seed), "--max-memory", str(args.max_memory)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1
        )
        self.buffer = ""

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def read(self, timeout: float, rss_cap: int) -> tuple[str, dict | None, int]:
        """("ok", message, peak RSS) or ("hang" | "over memory" | "crash", None, peak RSS)."""
        deadline = time.monotonic() + timeout
        peak = 0
        fd = self.proc.stdout.fileno()
        while True:
            if "\n" in self.buffer:
                line, self.buffer = self.buffer.split("\n", 1)
                return "ok", json.loads(line), peak
            rss = self.rss()
            peak = max(peak, rss)
            if rss > rss_cap:
                self.kill()
                return "over memory", None, peak
            if time.monotonic() > deadline:
                self.kill()
                return "hang", None, peak
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 1 << 16).decode()
                if not chunk:
                    self.proc.wait()
                    return "crash", {"returncode": self.proc.returncode}, peak
                self.buffer += chunk

    def send(self, start: int, end: int) -> None:
        self.proc.stdin.write(f"{start} {end}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def fuzz(args) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    build_targets(workdir)
    end = args.start + args.cases
    summary_path = workdir / f"chunk-{args.start}.json"
    counts: Counter = Counter()
    per_target: dict[str, Counter] = {}
    stats = {"peak_rss": 0, "max_growth": 0, "max_growth_ratio": 0.0, "restarts": 0,
             "baseline_rss": 0, "slowest": 0.0}  # fmt: skip
    started = time.perf_counter()
    i = args.start

    def save(final: bool) -> None:
        summary = {
            "command": " ".join(sys.argv),
            "seed": args.seed,
            "start": args.start,
            "next": i,
            "cases": i - args.start,
            "wall_s": time.perf_counter() - started,
            "max_memory": args.max_memory,
            "counts": dict(counts),
            "per_target": {k: dict(v) for k, v in per_target.items()},
            **stats,
            "final": final,
        }
        summary_path.write_text(json.dumps(summary, indent=1))

    def record(outcome: str, target: str, detail: dict) -> None:
        counts[outcome] += 1
        per_target.setdefault(target, Counter())[outcome.split(":")[0]] += 1
        if not outcome.startswith(("decoded", "error:")):
            with open(workdir / "findings.jsonl", "a") as f:
                f.write(json.dumps({"outcome": outcome, **detail}) + "\n")

    labels = list(TARGETS)
    while i < end:
        w = Worker(args)
        status, msg, peak = w.read(args.setup_timeout, 1 << 62)
        if status != "ok" or not msg.get("ready"):
            raise SystemExit(f"the worker did not start: {status} {msg}")
        stats["baseline_rss"] = max(stats["baseline_rss"], msg["rss"])
        # The cap follows the RSS before each case: the worker's own RSS grows with the
        # programs compiled for each new shape, which is not what a case allocates.
        last_rss = msg["rss"]
        w.send(i, end)
        while i < end:
            status, msg, peak = w.read(args.timeout, last_rss + args.max_memory + args.rss_slack)
            stats["peak_rss"] = max(stats["peak_rss"], peak)
            if status != "ok":
                record(status, labels[i % len(labels)], {"i": i, "detail": msg})
                stats["restarts"] += 1
                i += 1
                break
            r = msg
            last_rss = r["rss"]
            stats["peak_rss"] = max(stats["peak_rss"], r["rss"], peak)
            if r.get("growth") is not None:
                stats["max_growth"] = max(stats["max_growth"], r["growth"])
                if r["outcome"] == "decoded":
                    ratio = r["growth"] / r["estimate"]
                    stats["max_growth_ratio"] = max(stats["max_growth_ratio"], ratio)
            stats["slowest"] = max(stats["slowest"], r["seconds"])
            outcome = r["outcome"]
            if outcome in ("error", "uncaught"):
                outcome += f":{r['type']}"
            record(outcome, r["target"], r)
            i += 1
            if i % 500 == 0:
                save(False)
                if args.progress:
                    rate = (i - args.start) / (time.perf_counter() - started)
                    print(f"{i}: {rate:.1f} cases/s {dict(counts)}", file=sys.stderr, flush=True)
        else:
            w.kill()
    save(True)
    print(report(workdir, [summary_path]))


def report(workdir: Path, paths: list[Path] | None = None) -> str:
    """The Markdown table of the chunks' summed counts."""
    paths = paths or sorted(workdir.glob("chunk-*.json"))
    chunks = [json.loads(p.read_text()) for p in paths]
    counts: Counter = Counter()
    per_target: dict[str, Counter] = {}
    for c in chunks:
        counts.update(c["counts"])
        for k, v in c["per_target"].items():
            per_target.setdefault(k, Counter()).update(v)
    cases = sum(c["cases"] for c in chunks)
    wall = sum(c["wall_s"] for c in chunks)
    peak = max(c["peak_rss"] for c in chunks)
    base = max(c["baseline_rss"] for c in chunks)
    growth = max(c["max_growth"] for c in chunks)
    ratio = max(c["max_growth_ratio"] for c in chunks)
    budget = max(c["max_memory"] for c in chunks)
    mib = 1 << 20
    lines = [
        f"cases: {cases} in {wall:.0f} s ({cases / max(wall, 1e-9):.1f} cases/s), "
        f"{len(chunks)} chunk(s), budget {budget / mib:.0f} MiB",
        f"peak RSS of the worker: {peak / mib:.0f} MiB (after loading the {len(TARGETS)} "
        f"models: {base / mib:.0f} MiB); largest growth during one case: {growth / mib:.0f} MiB; "
        f"largest growth / estimate of a decoded case: {ratio:.2f}",
        f"slowest case: {max(c['slowest'] for c in chunks):.1f} s; worker restarts: "
        f"{sum(c['restarts'] for c in chunks)}",
        "",
        "| outcome | cases |",
        "|---|---:|",
    ]
    order = {k: n for n, k in enumerate(OUTCOME_ORDER)}
    for outcome, n in sorted(counts.items(), key=lambda kv: (order[kv[0].split(":")[0]], kv[0])):
        lines.append(f"| {outcome} | {n} |")
    lines += ["", "| target | " + " | ".join(OUTCOME_ORDER) + " |",
              "|---|" + "---:|" * len(OUTCOME_ORDER)]  # fmt: skip
    for label in TARGETS:
        row = per_target.get(label, Counter())
        lines.append(f"| {label} | " + " | ".join(str(row[k]) for k in OUTCOME_ORDER) + " |")
    return "\n".join(lines)


def replay(args) -> None:
    """Runs one case in this process and prints its outcome (a traceback if uncaught)."""
    from nlq_jax.codec.api import Codec

    workdir = Path(args.workdir)
    seeds = load_seeds(workdir)
    target, applied, _ = make_case(seeds, args.seed, args.replay)
    codecs = {target: Codec.load(workdir / "targets" / target / "export")}
    result = run_case(codecs, seeds, args.seed, args.replay, args.max_memory)
    print(result.pop("traceback", ""), file=sys.stderr)
    print(json.dumps(result, indent=1))


# Calibration: measured decode RSS growth against `decode_memory`.
def calibrate(args) -> None:
    """For each model, N and size: a fresh process loads an export, records its RSS, decodes a
    file of that size, and reports the growth of its peak RSS beside the model's estimate."""
    workdir = Path(args.workdir) / "calibrate"
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print("| model | N | size | RSS growth | decode_memory | estimate / growth |")
    print("|---|---:|---|---:|---:|---:|")
    for label in args.models.split(","):
        name, kwargs = TARGETS[label]
        for n in (int(v) for v in args.widths.split(",")):
            sized = {**kwargs, "N": n}
            if "M" in kwargs:
                sized["M"] = n * 3 // 2
            out = workdir / f"{label}-{n}"
            cmd = [sys.executable, __file__, "--calibrate-make", json.dumps([name, sized]),
                   "--workdir", str(out), "--sizes", args.sizes]  # fmt: skip
            if not (out / "made").exists():
                subprocess.run(cmd, check=True)
            for h, w in sizes:
                cmd = [sys.executable, __file__, "--calibrate-decode", f"{h}x{w}",
                       "--workdir", str(out)]  # fmt: skip
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout.splitlines()[-1])  # fmt: skip
                mib = 1 << 20
                print(f"| {label} | {n} | {h}×{w} | {r['growth'] / mib:.0f} MiB | "
                      f"{r['estimate'] / mib:.0f} MiB | {r['estimate'] / r['growth']:.2f} |",
                      flush=True)  # fmt: skip


def _calibrate_make(args) -> None:
    name, kwargs = json.loads(args.calibrate_make)
    out = Path(args.workdir)
    codec = random_codec(name, kwargs, f"calibrate-{name}")
    codec.save(out)
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        image = np.full((h, w, 3), 128, np.uint8)
        image[::7] = 30  # not quite flat
        (out / f"{size}.nlq").write_bytes(codec.compress(image))
    (out / "made").write_text("")


def _calibrate_decode(args) -> None:
    from nlq_jax.codec.api import Codec

    out = Path(args.workdir)
    codec = Codec.load(out)
    data = (out / f"{args.calibrate_decode}.nlq").read_bytes()
    h, w = (int(v) for v in args.calibrate_decode.split("x"))
    before = _status("VmRSS")
    _reset_peak()
    codec.decompress(data, max_memory=1 << 40)
    growth = _status("VmHWM") - before
    print(json.dumps({"growth": growth, "estimate": codec.decode_memory(h, w)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/nlq-fuzz", help="exports, seeds, results")
    p.add_argument("--cases", type=int, default=1000, help="cases to run")
    p.add_argument("--start", type=int, default=0, help="first case index (resume, chunks)")
    p.add_argument("--seed", type=int, default=0, help="the cases' seed")
    p.add_argument("--max-memory", type=int, default=512 << 20, help="decoding budget, bytes")
    p.add_argument("--rss-slack", type=int, default=1 << 30,
                   help="kill the worker past its RSS before a case + budget + this")  # fmt: skip
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case (a hang)")
    p.add_argument("--setup-timeout", type=float, default=600.0, help="seconds to start")
    p.add_argument("--progress", action="store_true", help="a line every 500 cases")
    p.add_argument("--report", action="store_true", help="print the summed table and exit")
    p.add_argument("--replay", type=int, help="run this one case here, with its traceback")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--calibrate", action="store_true", help="decode_memory against RSS")
    p.add_argument("--models", default=",".join(TARGETS), help="--calibrate's targets")
    p.add_argument("--widths", default="32,128", help="--calibrate's N values")
    p.add_argument("--sizes", default="256x256,512x512,1024x1024", help="--calibrate's sizes")
    p.add_argument("--calibrate-make", help=argparse.SUPPRESS)
    p.add_argument("--calibrate-decode", help=argparse.SUPPRESS)
    args = p.parse_args()
    # Codec.load records exports in the model index: keep the fuzzer's out of the user's.
    os.environ.setdefault("NLQ_HOME", str(Path(args.workdir) / "nlq_home"))
    if args.worker:
        worker(args)
    elif args.report:
        print(report(Path(args.workdir)))
    elif args.replay is not None:
        replay(args)
    elif args.calibrate:
        calibrate(args)
    elif args.calibrate_make:
        _calibrate_make(args)
    elif args.calibrate_decode:
        _calibrate_decode(args)
    else:
        fuzz(args)


if __name__ == "__main__":
    main()
