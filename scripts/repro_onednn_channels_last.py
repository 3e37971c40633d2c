"""Smallest reproduction of a memory-corrupting oneDNN kernel reached by PyTorch on the CPU.

The op: the backward pass (input and weight gradients) of a 1x1 convolution with stride 2 on a
channels-last input whose channel count is not a multiple of 8 (here 4 -> 8; 3 -> 8 and 4 -> 4 too), on a
CPU whose best vector ISA is AVX2 (for example AMD Zen 3). oneDNN runs it as ``brgconv_strided:avx2``
(backward_data) then ``jit_1x1:avx2`` (backward_weights), and memory is corrupted: on one intra-op thread
the process aborts ("double free or corruption", a segmentation fault or a bus error) within a few
iterations; on two threads it hung in our tries. Measured with oneDNN capped at AVX2 on an AVX-512 machine
(torch 2.14.1): 1x1 stride 2 with 3 or 4 input channels crashes; stride 1, a 3x3 kernel, or 8 and 16 input
channels run clean, and so does every case with a contiguous input.

On a machine with AVX-512 the same kernel is reached by capping oneDNN at AVX2::

    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/repro_onednn_channels_last.py            # crashes
    python scripts/repro_onednn_channels_last.py --contiguous                        # clean: other kernel
    ONEDNN_VERBOSE=1 ONEDNN_MAX_CPU_ISA=AVX2 python scripts/repro_onednn_channels_last.py  # names the kernel

It needs nothing but PyTorch (seen with torch 2.14.1, the CPU build's bundled oneDNN). kr_lib never hands a
network such a tensor by accident (``kr_lib.data.augment.prepare_batch`` returns the contiguous layout), and
``tests/test_layouts.py`` runs the book's networks in both layouts in subprocesses, so that a native crash
fails one test instead of aborting the suite.
"""
import argparse

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--contiguous", action="store_true", help="the same op on a contiguous input (runs clean)")
parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
parser.add_argument("--steps", type=int, default=200)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(0)
weight = torch.randn(8, 4, 1, 1, requires_grad=True)  # 4 -> 8 channels, 1x1 kernel; its gradient is needed
for step in range(args.steps):
    x = torch.randn(16, 32, 32, 4).permute(0, 3, 1, 2)  # (16, 4, 32, 32) with channels-last strides
    if args.contiguous:
        x = x.contiguous()
    x.requires_grad_(True)
    y = F.conv2d(x, weight, stride=2)
    grad_x, _ = torch.autograd.grad(y, (x, weight), torch.ones_like(y))
    # the exact input gradient of a 1x1 stride-2 conv: sum_k w[k, c] at even positions, 0 elsewhere
    expected = torch.zeros_like(grad_x)
    expected[:, :, ::2, ::2] = weight.detach().sum(dim=0).view(1, 4, 1, 1)
    if not torch.allclose(grad_x, expected, atol=1e-5):
        raise SystemExit(f"step {step}: wrong input gradient (max error {(grad_x - expected).abs().max():.3g})")
print(f"{args.steps} steps clean (torch {torch.__version__}, {args.threads} thread(s), "
      f"{'contiguous' if args.contiguous else 'channels-last'} input)")
