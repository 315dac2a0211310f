"""Forward time and peak memory of UHDformer on CPU: ours vs the official code.

Wall time and process CPU time are both reported: on a shared machine the wall
time depends on the load, the CPU time much less.  Each measurement runs in its own subprocess, so the peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that one model and
input size alone (it includes the Python + torch baseline, printed separately).
Timings are the median of ``--repeats`` forwards after one warm-up forward, under
``torch.inference_mode()``, with the paper configuration and random weights.  At
3840x2160 the warm-up is a 256x256 forward and a single forward is timed.

The official network (``supersupercong/UHDformer``, ``basicsr/archs/femasr_arch.py``)
is used only if its file is present: ``--official PATH`` or the environment
variable ``UHDFORMER_OFFICIAL`` (default ``/tmp/UHDformer/basicsr/archs/femasr_arch.py``).
Its imports of ``basicsr``, ``timm``, ``torchvision`` and ``einops`` are stubbed
in a temporary folder at run time (none of them are used by the network's
forward pass; the ``einops.rearrange`` stub does the same reshape/permute).
Without the file the benchmark prints ``official: not available`` and reports ours.

The official process is run with an address-space limit (``--official-mem-gib``)
so that a run that would exhaust the machine fails cleanly; such a run is
reported as "> limit".

Usage::

    python benchmarks/restoration_nets.py            # 512x512 and 3840x2160
    python benchmarks/restoration_nets.py --quick    # 256x256 only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DEFAULT_OFFICIAL = "/tmp/UHDformer/basicsr/archs/femasr_arch.py"
RESULTS = Path(__file__).resolve().parent / "results"

_STUBS = {
    "basicsr/__init__.py": "",
    "basicsr/utils/__init__.py": "",
    "basicsr/utils/registry.py": """
        class _Registry:
            def register(self, obj=None):
                return obj if obj is not None else (lambda o: o)
        ARCH_REGISTRY = _Registry()
    """,
    "basicsr/archs/__init__.py": "",
    "basicsr/archs/fema_utils.py": "ResBlock = CombineQuantBlock = object\n",
    "basicsr/archs/vgg_arch.py": "VGGFeatureExtractor = object\n",
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": """
        import torch
        class DropPath(torch.nn.Identity):
            def __init__(self, *args, **kwargs):
                super().__init__()
        def trunc_normal_(tensor, *args, **kwargs):
            return tensor
    """,
    "torchvision/__init__.py": "",
    "torchvision/models.py": "def vgg19(*args, **kwargs):\n    raise NotImplementedError\n",
    "einops/__init__.py": """
        import math
        def _groups(side):
            out, cur, depth = [], None, 0
            for tok in side.replace('(', ' ( ').replace(')', ' ) ').split():
                if tok == '(':
                    cur = []
                elif tok == ')':
                    out.append(cur)
                    cur = None
                elif cur is not None:
                    cur.append(tok)
                else:
                    out.append([tok])
            return out
        def rearrange(x, pattern, **sizes):
            left, right = (_groups(s) for s in pattern.split('->'))
            known = dict(sizes)
            for group, dim in zip(left, x.shape):
                unknown = [a for a in group if a not in known]
                rest = math.prod(known[a] for a in group if a in known)
                if unknown:
                    known[unknown[0]] = dim // rest
            flat = [a for g in left for a in g]
            x = x.reshape([known[a] for a in flat])
            order = [a for g in right for a in g]
            x = x.permute([flat.index(a) for a in order])
            return x.reshape([math.prod(known[a] for a in g) for g in right])
    """,
}


def _official_class(path: Path):
    """Import the official ``Net`` class from ``path`` with stubbed dependencies."""
    import importlib

    stub_root = Path(tempfile.mkdtemp(prefix="uhdformer_official_"))
    for rel, text in _STUBS.items():
        target = stub_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    (stub_root / "basicsr/archs/femasr_arch.py").write_text(path.read_text())
    sys.path.insert(0, str(stub_root))
    module = importlib.import_module("basicsr.archs.femasr_arch")
    return module.Net


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _child(impl: str, height: int, width: int, repeats: int, threads: int, official_path: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    baseline = _rss_gib()
    if impl == "ours":
        from sparsesel.nets import UHDformer, UHDformerConfig

        model = UHDformer(UHDformerConfig.paper()).eval()
    else:
        net_cls = _official_class(Path(official_path))
        model = net_cls(
            channel_query_dict={256: 16}, number_block=5, num_heads=8, match_factor=4, ffn_expansion_factor=4,
            scale_factor=8, bias=True, LayerNorm_type="WithBias", attention_matching=True, ffn_matching=True,
            ffn_restormer=False, unit_num=3,
        ).eval()
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    baseline = max(baseline, _rss_gib())
    times = []
    big = height * width > 10**6
    with torch.inference_mode():
        # warm-up (one-time kernel set-up); for the 4K size a 256x256 forward, so that a 4K forward runs only once
        model(x[:, :, :256, :256].contiguous() if big else x)
        if big:
            repeats = 1
        cpu_times = []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    return {"impl": impl, "size": f"{width}x{height}", "seconds": statistics.median(times), "all_seconds": times,
            "cpu_seconds": statistics.median(cpu_times), "peak_rss_gib": _rss_gib(), "baseline_rss_gib": baseline}


def _measure(impl: str, height: int, width: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_child", impl, str(height), str(width), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--official", args.official]
    limit = None
    if impl == "official" and args.official_mem_gib > 0:
        limit = int(args.official_mem_gib * 2**30)

    def preexec() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"impl": impl, "size": f"{width}x{height}", "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256x256 only, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each measurement")
    parser.add_argument("--official", default=os.environ.get("UHDFORMER_OFFICIAL", DEFAULT_OFFICIAL))
    parser.add_argument("--official-mem-gib", type=float, default=14.0,
                        help="address-space limit of the official run (0: none)")
    parser.add_argument("--skip-official-4k", action="store_true")
    parser.add_argument("--sizes", default="512x512,3840x2160", help="comma-separated WxH list (default: %(default)s)")
    parser.add_argument("--_child", nargs=3, metavar=("IMPL", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        impl, h, w = args._child
        print(json.dumps(_child(impl, int(h), int(w), args.repeats, args.threads, args.official)))
        return 0

    from tqdm import tqdm

    try:
        sizes = [(256, 256)] if args.quick else [tuple(int(v) for v in item.split("x"))[::-1] for item in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must look like 512x512,3840x2160, got {args.sizes!r}")
    if args.quick:
        args.repeats = min(args.repeats, 2)
    official_ok = Path(args.official).is_file()
    if not official_ok:
        print(f"official: not available (no file {args.official}; fetch supersupercong/UHDformer and pass --official)")
    jobs = [(impl, h, w) for h, w in sizes for impl in (["official"] if official_ok else []) + ["ours"]
            if not (impl == "official" and args.skip_official_4k and h * w > 10**6)]
    print(f"UHDformer paper config, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible), "
          f"{args.threads} torch threads, 1 warm-up forward then median of {args.repeats} (4K: 1); "
          "peak RSS per subprocess (baseline = RSS after building the model and input)")
    rows = []
    for impl, h, w in tqdm(jobs, desc="measuring", unit="run"):
        rows.append(_measure(impl, h, w, args))
    by = {(r["impl"], r["size"]): r for r in rows}
    header = (f"{'size':>10} | {'impl':>8} | {'wall s':>8} | {'CPU s':>8} | {'peak GiB':>8} | {'base GiB':>8} | "
              f"{'official/ours wall':>18} | {'official/ours CPU':>17}")
    print(header)
    print("-" * len(header))
    for h, w in sizes:
        size = f"{w}x{h}"
        for impl in ("official", "ours"):
            r = by.get((impl, size))
            if r is None:
                continue
            if "error" in r:
                print(f"{size:>10} | {impl:>8} | failed: {r['error'][:80]}")
                continue
            ratio = cpu_ratio = ""
            if impl == "ours" and "seconds" in by.get(("official", size), {}):
                ratio = f"{by[('official', size)]['seconds'] / r['seconds']:.2f}x"
                cpu_ratio = f"{by[('official', size)]['cpu_seconds'] / r['cpu_seconds']:.2f}x"
            print(f"{size:>10} | {impl:>8} | {r['seconds']:8.3f} | {r['cpu_seconds']:8.3f} | {r['peak_rss_gib']:8.2f} | "
                  f"{r['baseline_rss_gib']:8.2f} | {ratio:>18} | {cpu_ratio:>17}")
    goals = []
    r512 = (by.get(("official", "512x512")), by.get(("ours", "512x512")))
    if r512[0] and r512[1] and "seconds" in r512[0] and "seconds" in r512[1]:
        ratio = r512[0]["seconds"] / r512[1]["seconds"]
        cpu_ratio = r512[0]["cpu_seconds"] / r512[1]["cpu_seconds"]
        goals.append(f"goal 512x512 at most half the official time: {'met' if ratio >= 2 else 'MISSED'} "
                     f"({ratio:.2f}x faster in wall time, {cpu_ratio:.2f}x in CPU time)")
    r4k = by.get(("ours", "3840x2160"))
    if r4k and "peak_rss_gib" in r4k:
        goals.append(f"goal 3840x2160 under 8 GiB: {'met' if r4k['peak_rss_gib'] < 8 else 'MISSED'} ({r4k['peak_rss_gib']:.2f} GiB peak RSS)")
    for line in goals:
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "restoration_nets_quick" if args.quick else "restoration_nets" + ("" if args.sizes == "512x512,3840x2160" else "_" + args.sizes.replace(",", "_"))
    out = RESULTS / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows, "goals": goals}, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
