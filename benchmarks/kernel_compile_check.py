"""Compile the pair-attention kernels for a GPU without one: registers, spills, shared memory.

Triton compiles to PTX on any machine and ships ptxas, so the kernels' launch configurations
(part/core/pair_attention.py: forward_blocks, backward_blocks, NUM_WARPS) can be checked for
compile errors and register spills before a GPU run. Default target sm_90 (H100/H200).

    python benchmarks/kernel_compile_check.py [--arch 90] [--tokens 64 196] [--dtypes bf16 fp32]

Prints one line per (kernel, dtype, N): registers, spill bytes, shared memory. Exit 1 if a
compilation fails. Not a speed measurement.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from part.core import pair_attention as pa  # noqa: E402

POINTERS = {"fwd": ("S_REF", "S_TGT", "V", "OUT"), "bwd": ("S_REF", "S_TGT", "V", "DO", "DS_REF", "DS_TGT", "DV")}
FLOAT32 = ("LSE", "DELTA")
INDICES = ("REF", "TGT")


def signature(fn, dtype: str, constexprs: dict) -> dict:
    """Triton type strings per argument: data pointers in `dtype`, float32 LSE/DELTA, int64
    indices, int32 sizes and strides."""
    kind = "fwd" if fn is pa._fwd_kernel else "bwd"
    out = {}
    for name in fn.arg_names:
        if name in constexprs:
            out[name] = "constexpr"
        elif name in POINTERS[kind]:
            out[name] = "*" + dtype
        elif name in FLOAT32:
            out[name] = "*fp32"
        elif name in INDICES:
            out[name] = "*i64"
        else:
            out[name] = "i32"
    return out


def ptxas_info(ptx: str, arch: int) -> str:
    """ptxas -v's register and spill lines for the kernel's PTX."""
    import triton
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        r = subprocess.run([str(ptxas), f"-arch=sm_{arch}a", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
                           capture_output=True, text=True)
    return " ".join(line.split(":", 1)[-1].strip() for line in r.stderr.splitlines()
                    if "Used" in line or "spill" in line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 196], help="N (ViT-S/4: 64, ViT-B/16: 196)")
    ap.add_argument("--target-dim", type=int, default=4)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp16", "fp32"])
    a = ap.parse_args(argv)
    if pa.triton is None:
        print("Triton is not installed: nothing to compile")
        return 1
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    target = GPUTarget("cuda", a.arch, 32)
    for dtype in a.dtypes:
        half = dtype != "fp32"
        for N in a.tokens:
            for kind, fn, blocks in (("forward", pa._fwd_kernel, pa.forward_blocks(N, a.target_dim, half)),
                                     ("backward", pa._bwd_kernel, pa.backward_blocks(N, a.target_dim, half))):
                try:
                    k = triton.compile(ASTSource(fn, signature(fn, dtype, blocks), blocks), target=target,
                                       options={"num_warps": pa.NUM_WARPS})
                except Exception as e:  # report which configuration failed, then stop
                    print(f"{kind} {dtype} N={N} {blocks}: compilation failed: {e}")
                    return 1
                print(f"{kind:8s} {dtype} N={N:4d} sm_{a.arch}: {ptxas_info(k.asm['ptx'], a.arch)}; "
                      f"shared {k.metadata.shared} B; blocks {blocks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
