#!/usr/bin/env python3
"""The accuracy effect of reduced precision: the same short fine-tune in f32 and in f16/bf16.

Runs the `classify` example (all-MiniLM-L6-v2 on the polarity sentences unless `--model` and
`--train-file` say otherwise) once per dtype on one backend, with dropout off and the same
seeded batches so that the runs differ only by precision, and reports the per-step training losses side by
side, their largest difference, and the held-out metrics.

    cargo build --release --example classify [--features wgpu]
    python3 benches/precision.py --backend flex --dtypes f32,bf16 --out benches/results/precision-flex.json

Every float tensor runs in the dtype (Burn's `Device::configure`: weights, activations,
gradients and AdamW state), not PyTorch-style autocast with f32 master weights.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile


def run(args, dtype):
    with tempfile.TemporaryDirectory(prefix=f"precision-{dtype}-") as out_dir:
        return run_in(args, dtype, out_dir)


def run_in(args, dtype, out_dir):
    cmd = [
        args.classify,
        "--backend", args.backend,
        "--dtype", dtype,
        "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size),
        "--max-train-samples", str(args.steps * args.batch_size),
        "--max-eval-samples", str(args.eval_samples),
        "--logging-steps", "1",
        "--no-dropout",
        "--quiet",
        "--json",
        "--output-dir", out_dir,
    ] + (["--model", args.model] if args.model else []) + (
        ["--train-file", args.train_file] if args.train_file else []
    )
    print("$ " + " ".join(cmd), file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"dtype": dtype, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    # The run's report is the JSON line with the step losses (the predictions follow it).
    lines = [json.loads(l) for l in done.stdout.strip().splitlines() if l.startswith("{")]
    result = next(l for l in lines if "step_losses" in l)
    return {
        "dtype": dtype,
        "step_losses": [loss for _, loss in result["step_losses"]],
        "eval": result["eval"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classify", default="target/release/examples/classify")
    p.add_argument("--backend", default="flex")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-samples", type=int, default=400)
    p.add_argument("--model")
    p.add_argument("--train-file")
    p.add_argument("--out")
    p.add_argument("--strict", action="store_true",
                   help="exit with 1 when a run fails (a NaN loss included), after the report")
    args = p.parse_args()

    dtypes = args.dtypes.split(",")
    if dtypes[0] != "f32":
        dtypes = ["f32"] + [d for d in dtypes if d != "f32"]
    runs = [run(args, d) for d in dtypes]
    base = runs[0]
    if "error" in base:
        sys.exit(f"the f32 run failed: {base['error']}")
    for r in runs[1:]:
        if "error" in r:
            continue
        diffs = [abs(a - b) for a, b in zip(base["step_losses"], r["step_losses"])]
        r["max_abs_loss_diff"] = max(diffs) if diffs else math.nan
        r["mean_abs_loss_diff"] = sum(diffs) / len(diffs) if diffs else math.nan
    report = {"backend": args.backend, "steps": args.steps, "batch_size": args.batch_size,
              "model": args.model or "all-MiniLM-L6-v2 (fixtures)", "runs": runs}

    print(f"| dtype | loss step 1 | loss step {args.steps} | max abs Δ loss vs f32 | mean abs Δ | eval loss | eval accuracy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        if "error" in r:
            print(f"| {r['dtype']} | error: {' '.join(r['error'])} | | | | | |")
            continue
        l = r["step_losses"]
        print(
            f"| {r['dtype']} | {l[0]:.4f} | {l[-1]:.4f} | {r.get('max_abs_loss_diff', 0.0):.2e} | "
            f"{r.get('mean_abs_loss_diff', 0.0):.2e} | {r['eval'].get('eval_loss', math.nan):.4f} | "
            f"{r['eval'].get('eval_accuracy', math.nan):.4f} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    failed = [r["dtype"] for r in runs if "error" in r]
    if failed and args.strict:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
