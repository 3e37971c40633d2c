"""`kr report` (kr_lib.redundancy.kr_report) against fvcore's FlopCountAnalysis on one model.

Both analyse the same torchvision model (default ResNet-50, weights=None) on the same input; they are
timed interleaved, round by round (``kr_lib.perf.compare``), with the report on the meta device
(``kr report --device meta``: shapes and the autograd graph only, no arithmetic) as a third candidate.
The ratio is ``median(kr) / median(fvcore)`` (below 1: kr is faster). The run also checks that the two
agree on FLOPs; conventions differ by a factor of 2:

* kr_lib (torch.utils.flop_counter.FlopCounterMode): 2 FLOPs per multiply-accumulate (MAC), convolutions
  and matrix products only;
* fvcore: 1 "flop" per MAC, and it also counts BatchNorm, pooling and a few other ops.

So ``kr FLOPs == 2 * fvcore(conv + linear)``, network-wide and per block. Writes one ``kr_lib.perf``
record, ``benchmarks/results/report_<device>.json``: one row per tool, and the agreement in the summary.

    python benchmarks/bench_report.py [--model resnet50] [--input-size 224] [--device cpu] [--quick]
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.redundancy import kr_report, kr_summary  # noqa: E402


def _macs(ops) -> int:
    return int(ops.get("conv", 0) + ops.get("linear", 0) + ops.get("addmm", 0) + ops.get("matmul", 0))


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", help="a torchvision model name (default resnet50)")
    p.add_argument("--input-size", type=int, default=224, help="height = width of the input (default 224)")
    args = p.parse_args(argv)
    device, out, command = _common.setup(args, "report")
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).to(device).eval()
    x = torch.randn(1, 3, args.input_size, args.input_size, device=device)
    meta_model, meta_x = copy.deepcopy(model).to("meta"), x.to("meta")
    results = {}

    def run_kr():
        results["kr"] = kr_report(model, x)

    def run_meta():
        results["meta"] = kr_report(meta_model, meta_x)

    def run_fvcore():
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        results["fvcore"] = analysis.total(), analysis.by_operator(), analysis.by_module_and_operator()

    started = time.perf_counter()
    repeats = 2 if args.quick else args.repeats
    times = perf.compare({"kr report": run_kr, "fvcore": run_fvcore, "kr report (meta device)": run_meta},
                         device=device, repeats=repeats, warmup=1, clock=args.clock)
    report, meta_report = results["kr"], results["meta"]
    fv_total, fv_by_op, fv_by_module = results["fvcore"]
    summary = kr_summary(report)
    fv_macs = _macs(fv_by_op)
    every_block = all(int(f) == 2 * _macs(fv_by_module.get(b, {})) for b, f in zip(report["block"], report["FLOPs"]))
    fv_median = perf.median(times["fvcore"])
    flops = {"kr report": summary["total_flops"], "kr report (meta device)": kr_summary(meta_report)["total_flops"],
             "fvcore": int(fv_total)}
    rows = [{"model": args.model, "input": "x".join(map(str, x.shape)), "tool": tool, "seconds": perf.median(t),
             "seconds_per_round": t, "ratio_to_fvcore": perf.median(t) / fv_median, "flops": flops[tool],
             "flops_convention": "1 per MAC, conv + linear + BatchNorm + pooling" if tool == "fvcore"
             else "2 per MAC, conv + matmul"} for tool, t in times.items()]
    record = perf.make_record("report", device, rows, quick=args.quick, command=command, summary={
        "ratio kr report / fvcore (time)": perf.median(times["kr report"]) / fv_median,
        "ratio kr report on the meta device / fvcore (time)": perf.median(times["kr report (meta device)"]) / fv_median,
        "kr FLOPs = 2 x fvcore conv+linear MACs, whole network": summary["total_flops"] == 2 * fv_macs,
        "kr FLOPs = 2 x fvcore conv+linear MACs, every block": bool(every_block),
        "meta-device report identical": bool(meta_report.equals(report) and meta_report.attrs == report.attrs),
        "blocks found": summary["blocks"],
    }, parameters={"model": args.model, "input_size": args.input_size, "repeats": repeats, "clock": args.clock,
                   "threads": torch.get_num_threads(), "fvcore_conv_linear_macs": fv_macs,
                   "fvcore_by_operator": {k: int(v) for k, v in fv_by_op.items()},
                   "seconds": round(time.perf_counter() - started, 1)})
    for r in rows:
        print(f"{r['tool']:>24}: {r['seconds']:.3f} s  ({r['ratio_to_fvcore']:.2f} x fvcore)")
    for k, v in record["summary"].items():
        print(f"  {k}: {v}")
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
