#!/usr/bin/env python3
"""Google Benchmark's JSON output of ocellus_bench -> a compact markdown table.

Usage: bench_table.py BENCH.json [STDOUT.txt]

One row per benchmark: its name (arguments and label), its key rate, and that rate as a ratio
of the machine's ceiling measured in the same run (of_peak / of_gemm_peak: the f32 sgemm peak;
of_copy_bw: a memory copy measured beside it). STDOUT.txt, the console output of the same run,
supplies the ceilings line the benchmark prints before its results (it is not in the JSON).
With --benchmark_repetitions, the median rows are used. Standard library only.
"""
import json
import re
import sys

# benchmark family -> (the counter that is its key rate, the ratio to its ceiling or None)
KEYS = {
    "BM_GemmF32": ("GFLOP/s", "of_peak"),
    "BM_GemmQuant": ("GFLOP/s", "of_peak"),
    "BM_Matvec": ("GB/s", "of_copy_bw"),
    "BM_MatvecCached": ("GB/s", None),
    "BM_DotKernel": ("GB/s", None),
    "BM_TileKernelQ4": ("GB/s", None),
    "BM_Prefill512": ("tokens/s", "of_gemm_peak"),
    "BM_Decode": ("tokens/s", "of_copy_bw"),
    "BM_DecodeBatch": ("best_tokens/s", None),
    "BM_Encode": ("best_ms", "of_gemm_peak"),
    "BM_TrainStep": ("ms/step", "of_gemm_peak"),
    "BM_Tokenize": ("MB/s", None),
    "BM_Conv2d": ("best_GFLOP/s", "of_gemm_peak"),
    "BM_VaeStep": ("best_ms", "of_gemm_peak"),
    "BM_FusionSample": ("best_ms", "of_gemm_peak"),
}
# counters reported beside the ceiling ratio (a comparison with another implementation)
EXTRA = {"BM_TrainStep": ["x_torch"], "BM_DecodeBatch": ["x_one_stream"]}
# what a benchmark not in KEYS shows: the first of these it has, and its first of_* counter
FALLBACK_RATES = ["tokens/s", "GFLOP/s", "GB/s", "MB/s", "blocks/s"]
UNITS = {"best_ms": "ms", "ms/step": "ms/step", "best_tokens/s": "tokens/s", "best_GFLOP/s": "GFLOP/s"}


def number(v):
    """Three significant digits, no exponent for the sizes these counters have."""
    if v == 0:
        return "0"
    digits = max(0, 2 - int(f"{abs(v):e}".split("e")[1]))
    return f"{v:.{digits}f}"


def row_name(b):
    """BM_Matvec/m:5632/k:2048/dtype:8/min_time:1.000/real_time + label 'q8_0 packed'
    -> 'BM_Matvec m:5632 k:2048 q8_0 packed'."""
    # real_time, iterations:N, min_time:T, repeats:N say how it ran; dtype:N / file:N is the label
    skip = ("real_time", "iterations:", "min_time:", "repeats:", "threads:", "dtype:", "file:")
    parts = [p for p in b["run_name"].split("/") if not p.startswith(skip)]
    if b.get("label"):  # unnamed arguments (56/32/1) are what the label spells out
        parts = parts[:1] + [p for p in parts[1:] if not p.isdigit()]
    name = parts[0] + "".join(" " + p for p in parts[1:])
    return f"{name} {b['label']}" if b.get("label") else name


def rows(benchmarks):
    have_median = {b["run_name"] for b in benchmarks if b.get("aggregate_name") == "median"}
    for b in benchmarks:
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") != "median":
                continue
        elif b["run_name"] in have_median:
            continue  # a repetition: its median stands for it
        family = b["run_name"].split("/")[0]
        rate, ratio = KEYS.get(family, (None, None))
        if rate is None:
            rate = next((c for c in FALLBACK_RATES if c in b), None)
            ratio = next((k for k in b if k.startswith("of_")), None)
        rate_cell = "—" if rate not in b else f"{number(b[rate])} {UNITS.get(rate, rate)}"
        notes = [f"{b[ratio]:.2f} {ratio}"] if ratio and ratio in b else []
        notes += [f"{k} {b[k]:.2f}" for k in EXTRA.get(family, []) if b.get(k)]
        yield f"| {row_name(b)} | {rate_cell} | {'; '.join(notes) or '—'} |"


def machine_line(stdout_path):
    """'AMD EPYC ...: 2 threads; ceilings: memory read ..., copy ..., f32 GEMM peak ... (OpenBLAS X)'."""
    cpu = "this machine"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    if not stdout_path:
        return f"Machine: {cpu}."
    with open(stdout_path) as f:
        text = f.read()
    m = re.search(r"ceilings \((\d+) threads\): memory read ([\d.]+) GB/s, memory copy ([\d.]+) GB/s "
                  r"\(read\+write\), f32 GEMM peak ([\d.]+) GFLOP/s \(OpenBLAS sgemm 2048\^3, (\S+) kernels\)", text)
    if not m:
        return f"Machine: {cpu}."
    threads, read, copy, peak, core = m.groups()
    return (f"Machine: {cpu}, {threads} threads. Ceilings: memory read {read} GB/s, memory copy {copy} GB/s "
            f"(read+write), f32 GEMM peak {peak} GFLOP/s (OpenBLAS {core} kernels).")


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit("usage: bench_table.py BENCH.json [STDOUT.txt]")
    try:
        with open(argv[1]) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"bench_table: {argv[1]}: {e}")
    print(machine_line(argv[2] if len(argv) == 3 else None))
    print()
    print("| benchmark | rate | of ceiling |")
    print("|---|---|---|")
    for r in rows(data.get("benchmarks", [])):
        print(r)


if __name__ == "__main__":
    main(sys.argv)
