#!/usr/bin/env python3
"""The benchmark workloads of `benches` in PyTorch + HF transformers, with identical shapes.

BertForSequenceClassification (2 labels) on the same deterministic token ids as the Rust side,
with HF's default `attn_implementation="sdpa"` (PyTorch's fused scaled-dot-product attention;
row `torch-eager:DEV`, eager mode, as in every earlier results file) and with `--attention
sdpa,eager` also `attn_implementation="eager"` (`torch-eager-attn:DEV`, attention composed of
matmul/softmax as our Burn model runs it under autodiff):
  train: forward + cross-entropy + backward + clip_grad_norm_(1.0) + AdamW (two parameter
         groups: weight decay 0.01, none for bias and LayerNorm.weight; `fused=True`, HF's
         Trainer default `adamw_torch_fused` with torch >= 2.8), dropout on;
  infer: eval mode, torch.no_grad(), logits moved to the host.
Eager mode, and with --compile also torch.compile (default mode, sdpa). The first
run is the time to first step; `warmup` runs are not timed; the median and the minimum of
`iters` runs are reported. f16/bf16 rows are `torch.autocast` (f32 weights, AdamW in f32), and
say so in their dtype (`bf16-autocast`). --tf32 sets `torch.backends.cuda.matmul.allow_tf32`
(and cuDNN's); its value is in the output's `versions`. --isolate runs each row in a child
process of its own (a fresh heap, so its peak RSS is its own; `benches run` asks for it on the
CPU). Prints one JSON object (rows in the schema of the Rust `Measurement`) on stdout.

    python3 benches/pytorch_bench.py --configs tiny,small --seq 128 --batch 8,32 --compile
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import transformers
from transformers import BertConfig, BertForPreTraining, BertForSequenceClassification

CONFIGS = {"tiny": (2, 128, 2), "small": (4, 256, 4), "base": (12, 768, 12)}


def bench_config(name):
    layers, hidden, heads = CONFIGS[name]
    return BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        num_labels=2,
    )


def non_embedding_params(c):
    h, i = c.hidden_size, c.intermediate_size
    layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
    return c.num_hidden_layers * layer + h * h + h + h * c.num_labels + c.num_labels


def flops_per_token(c, kind, seq):
    """6N (train) or 2N (inference), N the non-embedding parameters: the MFU convention."""
    n = non_embedding_params(c)
    return 2.0 * n if kind == "infer" else 6.0 * n


def mlm_labels(input_ids):
    """The Rust side's MLM labels: a position is labelled (with its own id) when the xorshift64
    stream from seed 0x9E3779B97F4A7C15 draws < 15 of 100 there."""
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    flat = input_ids.reshape(-1).tolist()
    out = []
    for i in flat:
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out.append(i if x % 100 < 15 else -100)
    return torch.tensor(out, dtype=torch.long).reshape(input_ids.shape)


def ids(batch, seq, vocab):
    """The xorshift64 sequence of the Rust side: ids in [1, vocab)."""
    x = 0x2545F4914F6CDD1D
    mask = (1 << 64) - 1
    out = []
    for _ in range(batch * seq):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out.append(1 + x % (vocab - 1))
    return torch.tensor(out, dtype=torch.long).reshape(batch, seq)


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(kind, name, batch, seq, device, dtype, warmup, iters, budget_s, compile_, attention="sdpa", ckpt=False):
    torch.manual_seed(0)
    config = bench_config(name)
    # `_from_config` takes `attn_implementation` on transformers 4.x and 5.x (the constructor
    # does not on 5.x).
    cls = BertForPreTraining if kind == "pretrain" else BertForSequenceClassification
    model = cls._from_config(config, attn_implementation=attention).to(device)
    assert model.config._attn_implementation == attention, model.config._attn_implementation
    input_ids = ids(batch, seq, config.vocab_size).to(device)
    labels = torch.tensor([i % 2 for i in range(batch)], device=device)
    # pretrain: HF's BertForPreTraining loss, MLM over every position's logits + NSP.
    extra = {"labels": labels}
    if kind == "pretrain":
        extra = {"labels": mlm_labels(input_ids.cpu()).to(device), "next_sentence_label": labels}
    autocast = dtype != "f32"
    amp = {"f16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ckpt = ckpt and kind in ("train", "pretrain")
    if ckpt:
        model.gradient_checkpointing_enable()  # HF's --gradient_checkpointing
    if kind in ("train", "pretrain"):
        model.train()
        no_decay = ["bias", "LayerNorm.weight"]
        groups = [
            {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        # HF's Trainer default with torch >= 2.8 (`optim="adamw_torch_fused"`); before
        # 2026-12-06 the results files' PyTorch rows used the single-tensor default on the CPU.
        optim = torch.optim.AdamW(groups, lr=1e-5, eps=1e-8, fused=True)
        fwd = torch.compile(model) if compile_ else model

        def step():
            with torch.autocast(device.type, dtype=amp, enabled=autocast):
                loss = fwd(input_ids=input_ids, **extra).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            optim.zero_grad(set_to_none=True)
            sync(device)
    else:
        model.eval()
        fwd = torch.compile(model) if compile_ else model

        def step():
            with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=autocast):
                logits = fwd(input_ids=input_ids).logits
            logits.float().cpu()

    times, first = [], None
    total = max(warmup, 1) + max(iters, 1)
    for k in range(total):
        t = time.perf_counter()
        step()
        ms = (time.perf_counter() - t) * 1e3
        if k == 0:
            first = ms
        if k >= max(warmup, 1):
            times.append(ms)
            if sum(times) / 1e3 > budget_s:
                break
    if not times:
        times = [first]
    med = statistics.median(times)
    fpt = flops_per_token(config, kind, seq)
    tokens_per_s = batch * seq / (med / 1e3)
    return {
        "kind": kind,
        "config": name,
        "batch": batch,
        "seq": seq,
        "backend": f"torch-{'compile' if compile_ else 'eager'}{'-attn' if attention == 'eager' else ''}{'/ckpt' if ckpt else ''}:{device.type}",
        "dtype": dtype if dtype == "f32" else f"{dtype}-autocast",
        "median_ms": med,
        "min_ms": min(times),
        "tokens_per_s": tokens_per_s,
        "samples_per_s": batch / (med / 1e3),
        "first_step_ms": first,
        "peak_rss_mib": peak_rss_mib(),
        "device_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if device.type == "cuda" else None,
        "iters": len(times),
        "flops_per_token": fpt,
        "achieved_tflops": tokens_per_s * fpt / 1e12,
    }


def measure_row(args):
    """`measure` on a row as JSON carries it: the device by name."""
    return measure(*args[:4], torch.device(args[4]), *args[5:])


def isolated(args, tf32):
    """`measure_row(args)` in a child process of this script (its log on this one's stderr)."""
    out = subprocess.run([sys.executable, __file__, "--row", json.dumps(args), "--tf32", tf32],
                         stdout=subprocess.PIPE, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the row's child process failed (exit {out.returncode})")
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="tiny,small")
    p.add_argument("--seq", default="128")
    p.add_argument("--batch", default="8,32")
    p.add_argument("--workloads", default="train,infer")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=60.0)
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--attention", default="sdpa", help="sdpa and/or eager (HF attn_implementation), comma-separated")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="training rows also with model.gradient_checkpointing_enable() (backend `torch-eager/ckpt`)")
    p.add_argument("--tf32", choices=["on", "off"], default="off",
                   help="torch.backends.cuda.matmul.allow_tf32 (and cudnn.allow_tf32); PyTorch's default is off")
    p.add_argument("--isolate", action="store_true",
                   help="each row in a child process of its own, so that its peak RSS is its own (as the "
                        "Rust side's rows of host backends)")
    p.add_argument("--row", help=argparse.SUPPRESS)  # a child's one row: measure()'s arguments as JSON
    a = p.parse_args()
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    if a.row is not None:
        args = json.loads(a.row)
        json.dump(measure_row(args), sys.stdout)
        return
    rows = []
    variants = [(False, att) for att in a.attention.split(",")] + ([(True, "sdpa")] if a.compile else [])
    for kind in a.workloads.split(","):
        for name in a.configs.split(","):
            for seq in map(int, a.seq.split(",")):
                for batch in map(int, a.batch.split(",")):
                    ckpts = [False, True] if a.gradient_checkpointing and kind != "infer" else [False]
                    for (c, att), ck in ((v, ck) for v in variants for ck in ckpts):
                        try:
                            args = [kind, name, batch, seq, a.device, a.dtype, a.warmup, a.iters, a.budget_s, c, att, ck]
                            r = isolated(args, a.tf32) if a.isolate else measure_row(args)
                        except Exception as e:  # noqa: BLE001 - torch.compile may lack a compiler here
                            print(f"torch {'compile' if c else att} {kind} {name} s{seq} b{batch}: failed: {e}", file=sys.stderr)
                            if not c:
                                raise  # an eager row that fails is an error, not a missing row
                            continue
                        print(f"{r['backend']:>18} {kind} {name} s{seq} b{batch}: {r['tokens_per_s']:.0f} tokens/s, "
                              f"{r['median_ms']:.1f} ms/step (first {r['first_step_ms']:.0f} ms)", file=sys.stderr)
                        rows.append(r)
    json.dump({
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                     "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"},
        "results": rows,
    }, sys.stdout)


if __name__ == "__main__":
    main()
