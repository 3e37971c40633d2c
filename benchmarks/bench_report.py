"""Benchmark: `kr report` (kr_lib.redundancy.kr_report) against fvcore's FlopCountAnalysis on the same model.

Both analyse the same torchvision model (default ResNet-50, weights=None) on the same input in one run;
each is timed ``--repeats`` times after one warm-up and the medians are compared (ratio = kr / fvcore).
The report also checks that the two agree on FLOPs. Conventions differ by a factor of 2:

* kr_lib (torch.utils.flop_counter.FlopCounterMode): 2 FLOPs per multiply-accumulate (MAC), convolutions
  and matrix products only;
* fvcore: 1 "flop" per MAC, and it also counts BatchNorm, pooling and a few other ops.

So ``kr FLOPs == 2 * fvcore(conv + linear)``, network-wide and per block. The report is also timed on
the meta device (``kr report --device meta``: shapes only, no arithmetic), which gives the same table. Writes
``benchmarks/results/report_<device>.json``.

    .venv/bin/python benchmarks/bench_report.py [--model resnet50] [--repeats 5] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

from kr_lib.device import resolve_device
from kr_lib.redundancy import kr_report, kr_summary


def _timed(fn, repeats: int, sync) -> tuple[list[float], object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/report_<device type>.json)")
    args = parser.parse_args(argv)

    from fvcore.nn import FlopCountAnalysis

    device = resolve_device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).to(device).eval()
    x = torch.randn(1, 3, args.input_size, args.input_size, device=device)

    def run_fvcore():
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total(), analysis.by_operator(), analysis.by_module_and_operator()

    load_before = os.getloadavg()
    kr_times, report = _timed(lambda: kr_report(model, x), args.repeats, sync)
    fv_times, (fv_total, fv_by_op, fv_by_module) = _timed(run_fvcore, args.repeats, sync)
    # the same report on the meta device: shapes and the graph only, nothing computed
    meta_model, meta_x = model.to("meta"), x.to("meta")
    meta_times, meta_report = _timed(lambda: kr_report(meta_model, meta_x), args.repeats, lambda: None)
    load_after = os.getloadavg()

    summary = kr_summary(report)
    macs = lambda ops: int(ops.get("conv", 0) + ops.get("linear", 0) + ops.get("addmm", 0) + ops.get("matmul", 0))
    fv_macs = macs(fv_by_op)
    blocks_agree = all(int(f) == 2 * macs(fv_by_module.get(b, {})) for b, f in zip(report["block"], report["FLOPs"]))
    kr_med, fv_med = statistics.median(kr_times), statistics.median(fv_times)
    result = {
        "benchmark": "kr report vs fvcore FlopCountAnalysis",
        "model": args.model,
        "input_shape": list(x.shape),
        "device": str(device),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "torchvision": torchvision.__version__,
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "load_average_1min_before_after": [load_before[0], load_after[0]]},
        "repeats": args.repeats,
        "kr_report_seconds": kr_times,
        "fvcore_seconds": fv_times,
        "kr_report_median_s": kr_med,
        "fvcore_median_s": fv_med,
        "ratio_kr_over_fvcore": kr_med / fv_med,
        "kr_report_meta_seconds": meta_times,
        "kr_report_meta_median_s": statistics.median(meta_times),
        "ratio_kr_meta_over_fvcore": statistics.median(meta_times) / fv_med,
        "meta_report_identical": bool(meta_report.equals(report) and meta_report.attrs == report.attrs),
        "flops": {
            "convention": "kr: 2 FLOPs per multiply-accumulate (conv + matmul only); fvcore: 1 per MAC, plus BatchNorm/pooling",
            "kr_total_flops": summary["total_flops"],
            "fvcore_total": int(fv_total),
            "fvcore_by_operator": {k: int(v) for k, v in fv_by_op.items()},
            "fvcore_conv_linear_macs": fv_macs,
            "agree_total": summary["total_flops"] == 2 * fv_macs,
            "agree_every_block": bool(blocks_agree),
        },
        "kr_summary": summary,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"report_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)

    print(f"{args.model} {tuple(x.shape)} on {device}, {args.repeats} repeats (medians)")
    print(f"  kr report : {kr_med:.3f} s")
    print(f"  fvcore    : {fv_med:.3f} s")
    print(f"  ratio kr/fvcore: {kr_med / fv_med:.2f}")
    print(f"  kr report on the meta device (no compute): {result['kr_report_meta_median_s']:.3f} s, "
          f"ratio to fvcore {result['ratio_kr_meta_over_fvcore']:.2f}, same report: {result['meta_report_identical']}")
    print(f"  FLOPs: kr {summary['total_flops']:,} = 2 x fvcore conv+linear {fv_macs:,}: {result['flops']['agree_total']}; "
          f"every block: {blocks_agree}; fvcore total incl. BN/pool {int(fv_total):,}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
