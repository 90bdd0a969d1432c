#!/usr/bin/env python3
"""HF/torch references for the training engine (`train/` tests).

    python3 train/tests/reference/make_train_reference.py

Writes, beside this script:
  schedules.json   the LR of each of HF's six schedules at each of 100 optimizer steps, from
                   `transformers.get_scheduler(name, optimizer, num_warmup_steps, num_training_steps)`
                   (the LR the optimizer uses at step k, read before `scheduler.step()`).
  adamw.json       a few steps of fine-tuning the tiny `BertForSequenceClassification` of
                   `bert/tests/reference/seq_cls_single` (dropout 0) with torch `AdamW` in the two
                   HF groups (no decay for bias and LayerNorm weights) and
                   `get_linear_schedule_with_warmup`, with and without `clip_grad_norm_(1.0)`:
                   loss, grad norm and LR at every step, and named parameters after the last.
Needs torch, transformers, safetensors (pip).
"""
import json
import os

import torch
import transformers
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, get_scheduler

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "../../../bert/tests/reference/seq_cls_single")


def schedules():
    out = {"transformers": transformers.__version__, "base_lr": 3e-4, "warmup": 10, "total": 100, "schedules": {}}
    specs = {
        "constant": {}, "constant_with_warmup": {}, "linear": {},
        "cosine": {"num_cycles": 0.5},
        "cosine_with_restarts": {"num_cycles": 3},
        "polynomial": {"lr_end": 1e-7, "power": 2.0},
    }
    for name, kw in specs.items():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=out["base_lr"])
        sched = get_scheduler(name, opt, num_warmup_steps=out["warmup"], num_training_steps=out["total"],
                              scheduler_specific_kwargs=kw)
        lrs = []
        for _ in range(out["total"]):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out["schedules"][name] = {"kwargs": kw, "lrs": lrs}
    with open(os.path.join(HERE, "schedules.json"), "w") as f:
        json.dump(out, f, indent=1)


NAMED = ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
         "bert.encoder.layer.1.output.LayerNorm.weight", "bert.encoder.layer.0.intermediate.dense.bias",
         "bert.pooler.dense.weight", "classifier.weight", "classifier.bias"]


def batches():
    """Six batches of 3 drawn from the case's inputs with different labels and masks."""
    x = load_file(os.path.join(CASE, "inputs.safetensors"))
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(6):
        ids = torch.randint(1, 99, x["input_ids"].shape, generator=g) * x["attention_mask"]
        out.append(dict(input_ids=ids, attention_mask=x["attention_mask"], token_type_ids=x["token_type_ids"],
                        labels=torch.randint(0, 3, (3,), generator=g)))
    return out


def finetune(clip):
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(CASE)
    model.train()  # dropout is 0 in this config, so train mode is deterministic
    no_decay = ["bias", "LayerNorm.weight"]
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": 0.1},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=6)
    steps = []
    for batch in batches():
        lr = opt.param_groups[0]["lr"]
        loss = model(**batch).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0 if clip else float("inf"))
        opt.step()
        sched.step()
        opt.zero_grad()
        steps.append({"loss": loss.item(), "grad_norm": norm.item(), "lr": lr})
    params = dict(model.named_parameters())
    return {"steps": steps, "params": {n: params[n].detach().flatten().tolist() for n in NAMED},
            "shapes": {n: list(params[n].shape) for n in NAMED}}


def adamw():
    out = {"transformers": transformers.__version__, "torch": torch.__version__,
           "lr": 1e-3, "weight_decay": 0.1, "warmup": 2, "total": 6,
           "batches": [{k: v.tolist() for k, v in b.items()} for b in batches()],
           "no_clip": finetune(False), "clip": finetune(True)}
    with open(os.path.join(HERE, "adamw.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    schedules()
    adamw()
