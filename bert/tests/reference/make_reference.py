#!/usr/bin/env python3
"""Reference outputs from HF transformers for the parity tests of the `bert` crate.

    python3 bert/tests/reference/make_reference.py            # writes bert/tests/reference/*/
    python3 bert/tests/reference/make_reference.py --minilm DIR   # + real-model case and the
        # fill-mask pipeline case (its tokenizer) from DIR
    python3 bert/tests/reference/make_reference.py --check-roundtrip OUT
        # loads every HF directory the Rust test `save_pretrained_round_trip` wrote under OUT
        # with HF `from_pretrained`, requires no missing/unexpected keys, and compares its
        # outputs with the committed references (1e-4).
    python3 bert/tests/reference/make_reference.py --compare GOT.safetensors WANT.safetensors

Each case directory holds an HF model directory (config.json + weights: tiny random BERTs,
one per head, saved by `save_pretrained`), `inputs.safetensors` (named as HF's forward
arguments) and `outputs.safetensors` (named as HF's output fields; `grad.<key>` are gradients
of the loss w.r.t. named parameters). Needs torch and transformers (pip).
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (BertConfig, BertForMaskedLM, BertForMultipleChoice,
                          BertForNextSentencePrediction, BertForPreTraining,
                          BertForQuestionAnswering, BertForSequenceClassification,
                          BertForTokenClassification, BertLMHeadModel, BertModel)

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB, SEQ, BATCH = 99, 8, 3


def tiny_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0)
    base.update(kw)
    return BertConfig(**base)


def randomize(model, gen):
    """Spread every parameter (HF's init is too gentle to exercise the numerics)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * 0.1
            p.copy_(1.0 + noise if name.endswith("LayerNorm.weight") else noise * 3)


def base_inputs(gen, batch=BATCH, seq=SEQ):
    ids = torch.randint(1, VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 6:] = 0   # padded rows, padding token 0 (its embedding row gets no gradient)
    mask[batch - 1, 4:] = 0
    ids = ids * mask
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, 3:] = 1
    types = types * mask
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def save_case(name, model, inputs, outputs, safe=True, meta=None):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    for f in ("model.safetensors", "pytorch_model.bin"):
        if os.path.exists(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    if safe:
        model.save_pretrained(d)
    else:  # the legacy format: a torch.save'd state dict (zip + pickle)
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(d)
        torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(d, "inputs.safetensors"))
    save_file({k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in outputs.items()}, os.path.join(d, "outputs.safetensors"))
    meta = dict(meta or {}, transformers=transformers.__version__, torch=torch.__version__)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def run(model, inputs, fields, grads=()):
    model.eval()
    model.zero_grad()
    out = model(**inputs)
    res = {f: getattr(out, f) for f in fields if getattr(out, f, None) is not None}
    if grads:
        out.loss.backward()
        params = dict(model.named_parameters())
        for g in grads:
            res["grad." + g] = params[g].grad
    return res


def make_all():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    # BertModel: pooler, padding mask, token types.
    m = BertModel(tiny_config(hidden_act="gelu")); randomize(m, gen)
    x = base_inputs(gen)
    save_case("bert_model", m, x, run(m, x, ["last_hidden_state", "pooler_output"]),
              meta=dict(cls="BertModel"))

    # BertForPreTraining, saved as pytorch_model.bin to exercise the pickle reader.
    m = BertForPreTraining(tiny_config(hidden_act="gelu_new")); randomize(m, gen)
    x = base_inputs(gen)
    labels = torch.full((BATCH, SEQ), -100)
    labels[0, 1], labels[0, 5], labels[1, 2], labels[2, 3] = 5, 17, 42, 98
    x.update(labels=labels, next_sentence_label=torch.tensor([0, 1, 1]))
    save_case("pretraining", m, x, run(m, x, ["loss", "prediction_logits", "seq_relationship_logits"]),
              safe=False, meta=dict(cls="BertForPreTraining"))

    # BertForMaskedLM: the tied decoder gets gradients from both of its uses.
    m = BertForMaskedLM(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)); randomize(m, gen)
    x = base_inputs(gen)
    labels = torch.full((BATCH, SEQ), -100)
    labels[0, 2], labels[1, 0], labels[1, 4], labels[2, 1] = 7, 3, 60, 11
    x.update(labels=labels)
    save_case("masked_lm", m, x, run(m, x, ["loss", "logits"], grads=[
        "bert.embeddings.word_embeddings.weight", "cls.predictions.bias",
        "cls.predictions.transform.dense.weight", "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.output.LayerNorm.weight", "bert.embeddings.position_embeddings.weight"]),
        meta=dict(cls="BertForMaskedLM"))

    # BertLMHeadModel with cross-attention: shifted causal loss.
    m = BertLMHeadModel(tiny_config(is_decoder=True, add_cross_attention=True, hidden_act="relu")); randomize(m, gen)
    x = base_inputs(gen)
    x.pop("token_type_ids")
    labels = x["input_ids"].clone()
    labels[x["attention_mask"] == 0] = -100
    x.update(labels=labels, encoder_hidden_states=torch.randn(BATCH, 5, 32, generator=gen),
             encoder_attention_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]))
    save_case("lm_head_cross", m, x, run(m, x, ["loss", "logits"]), meta=dict(cls="BertLMHeadModel"))

    # BertLMHeadModel generation (greedy, with HF's cache), no cross-attention.
    m = BertLMHeadModel(tiny_config(is_decoder=True, hidden_act="silu")); randomize(m, gen)
    m.eval()
    ids = torch.randint(1, VOCAB, (2, 4), generator=gen)
    n = 6
    with torch.no_grad():
        seq = m.generate(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                         use_cache=True, pad_token_id=0, eos_token_id=None)
        logits = m(input_ids=ids).logits
    save_case("lm_head_generate", m, dict(input_ids=ids), dict(sequences=seq, logits=logits),
              meta=dict(cls="BertLMHeadModel", max_new_tokens=n))

    # BertForNextSentencePrediction.
    m = BertForNextSentencePrediction(tiny_config()); randomize(m, gen)
    x = base_inputs(gen); x.update(labels=torch.tensor([1, 0, 1]))
    save_case("nsp", m, x, run(m, x, ["loss", "logits"]), meta=dict(cls="BertForNextSentencePrediction"))

    # BertForSequenceClassification: single-label (with a gradient check), regression, multi-label.
    c = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    m = BertForSequenceClassification(c); randomize(m, gen)
    x = base_inputs(gen); x.update(labels=torch.tensor([2, 0, 1]))
    save_case("seq_cls_single", m, x, run(m, x, ["loss", "logits"], grads=[
        "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.intermediate.dense.bias", "bert.pooler.dense.weight", "classifier.weight",
        "bert.embeddings.LayerNorm.weight"]), meta=dict(cls="BertForSequenceClassification"))

    m = BertForSequenceClassification(tiny_config(num_labels=1)); randomize(m, gen)
    x = base_inputs(gen); x.update(labels=torch.tensor([0.5, -1.25, 2.0]))
    save_case("seq_cls_regression", m, x, run(m, x, ["loss", "logits"]), meta=dict(cls="BertForSequenceClassification"))

    m = BertForSequenceClassification(tiny_config(num_labels=4, problem_type="multi_label_classification")); randomize(m, gen)
    x = base_inputs(gen)
    x.update(labels=torch.tensor([[1., 0., 1., 0.], [0., 0., 0., 1.], [1., 1., 1., 1.]]))
    save_case("seq_cls_multi", m, x, run(m, x, ["loss", "logits"]), meta=dict(cls="BertForSequenceClassification"))

    # BertForMultipleChoice: [batch, choices, seq].
    m = BertForMultipleChoice(tiny_config(hidden_act="gelu_new")); randomize(m, gen)
    parts = [base_inputs(gen, batch=2) for _ in range(3)]
    x = {k: torch.stack([p[k] for p in parts], dim=1) for k in parts[0]}
    x.update(labels=torch.tensor([2, 0]))
    save_case("multiple_choice", m, x, run(m, x, ["loss", "logits"]), meta=dict(cls="BertForMultipleChoice"))

    # BertForTokenClassification. Labels at padded positions are real classes: the reference
    # loss applies HF's active-loss mask (labels where attention_mask == 0 become -100).
    m = BertForTokenClassification(tiny_config(num_labels=5)); randomize(m, gen)
    x = base_inputs(gen)
    labels = torch.randint(0, 5, (BATCH, SEQ), generator=gen)
    labels[0, 0] = -100
    active = torch.where(x["attention_mask"] == 1, labels, torch.tensor(-100))
    out = run(m, dict(x, labels=active), ["loss", "logits"])
    save_case("token_cls", m, dict(x, labels=labels), out, meta=dict(cls="BertForTokenClassification"))

    # BertForQuestionAnswering: one end position past the sequence is clamped and ignored.
    m = BertForQuestionAnswering(tiny_config()); randomize(m, gen)
    x = base_inputs(gen)
    x.update(start_positions=torch.tensor([1, 3, 0]), end_positions=torch.tensor([2, 100, 3]))
    save_case("qa", m, x, run(m, x, ["loss", "start_logits", "end_logits"]), meta=dict(cls="BertForQuestionAnswering"))


def make_sharded():
    """`qa_sharded`: the `qa` case as HF writes a sharded checkpoint (`save_pretrained` with
    `max_shard_size`: weights in five `model-0000K-of-00005.safetensors` files and a
    `model.safetensors.index.json` naming each tensor's file), with `qa`'s inputs and outputs."""
    src, d = os.path.join(HERE, "qa"), os.path.join(HERE, "qa_sharded")
    shutil.rmtree(d, ignore_errors=True)
    m = BertForQuestionAnswering.from_pretrained(src)
    m.save_pretrained(d, max_shard_size="20KB")
    for f in ("inputs.safetensors", "outputs.safetensors"):
        shutil.copy(os.path.join(src, f), d)
    with open(os.path.join(src, "case.json")) as f:
        meta = json.load(f)
    meta.update(sharded=True, transformers=transformers.__version__, torch=torch.__version__)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)

    # `qa_sharded_bin`: the legacy pickle layout transformers 4 wrote (`save_pretrained(...,
    # safe_serialization=False)`; transformers 5 writes safetensors only): two
    # `pytorch_model-0000K-of-00002.bin` files of `torch.save`d tensors and
    # `pytorch_model.bin.index.json`, the same names and index as transformers 4's `shard_checkpoint`.
    b = os.path.join(HERE, "qa_sharded_bin")
    shutil.rmtree(b, ignore_errors=True)
    os.makedirs(b)
    m.config.save_pretrained(b)
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    keys = list(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves):
        name = f"pytorch_model-{i + 1:05d}-of-{len(halves):05d}.bin"
        torch.save({k: state[k] for k in part}, os.path.join(b, name))
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    with open(os.path.join(b, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    for f in ("inputs.safetensors", "outputs.safetensors", "case.json"):
        shutil.copy(os.path.join(d, f), b)


def make_resized():
    """`masked_lm_resized`: HF's `resize_token_embeddings(vocab + 5)` (its default
    `mean_resizing=True`) of the `masked_lm` case, and the outputs on `masked_lm`'s inputs; the
    model itself is not saved (the test resizes `masked_lm`)."""
    src, d = os.path.join(HERE, "masked_lm"), os.path.join(HERE, "masked_lm_resized")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(0)
    m = BertForMaskedLM.from_pretrained(src)
    new = m.config.vocab_size + 5
    m.resize_token_embeddings(new)
    x = load_file(os.path.join(src, "inputs.safetensors"))
    out = run(m, x, ["loss", "logits"])
    save_file({k: v.detach().float().contiguous() for k, v in out.items()}, os.path.join(d, "outputs.safetensors"))
    meta = dict(source="masked_lm", new_num_tokens=new, transformers=transformers.__version__, torch=torch.__version__)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


SENTENCES = [
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Crème brûlée is a dessert; 東京 is a city!", None),
    ("How old are you?", "I am six years old, thanks for asking."),
    ("BERT", None),
]


def make_minilm(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    m = BertModel.from_pretrained(model_dir).eval()
    a = [s[0] for s in SENTENCES]
    b = [s[1] for s in SENTENCES]
    enc = tok(a, padding=True, return_tensors="pt")
    # One pair, encoded on its own row so that token types are exercised.
    pair = tok(a[2], b[2], padding="max_length", max_length=enc["input_ids"].shape[1] + 8, return_tensors="pt")
    single = tok(a, padding="max_length", max_length=pair["input_ids"].shape[1], return_tensors="pt")
    x = {k: torch.cat([single[k], pair[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        out = m(**x)
    d = os.path.join(HERE, "minilm")
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in x.items()}, os.path.join(d, "inputs.safetensors"))
    save_file({"last_hidden_state": out.last_hidden_state.contiguous(),
               "pooler_output": out.pooler_output.contiguous()}, os.path.join(d, "outputs.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(cls="BertModel", sentences=SENTENCES, transformers=transformers.__version__,
                       torch=torch.__version__), f, indent=1, ensure_ascii=False)


FILL_MASK_TEXTS = ["The capital of France is [MASK].", "Hackers [MASK] code at [MASK] o'clock."]


def make_fill_mask(model_dir):
    """HF's fill-mask pipeline (top 5) with all-MiniLM-L6-v2's tokenizer over a tiny random
    `BertForMaskedLM` of its vocabulary, saved in float16 (HF's own half-precision file; the
    reference runs those same rounded weights in float32)."""
    from transformers import AutoTokenizer, pipeline
    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(99)
    cfg = tiny_config(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=24, max_position_embeddings=64)
    m = BertForMaskedLM(cfg); randomize(m, gen)
    with torch.no_grad():  # peaked predictions: the top 6 logits of every mask ≥ 0.09 apart
        m.bert.embeddings.word_embeddings.weight.mul_(6)
    m = m.half().float().eval()
    d = os.path.join(HERE, "fill_mask")
    os.makedirs(d, exist_ok=True)
    m.half().save_pretrained(d)
    m = m.float()
    fill = pipeline("fill-mask", model=m, tokenizer=tok, top_k=5)
    results = []
    for text in FILL_MASK_TEXTS:
        out = fill(text)
        masks = out if isinstance(out[0], list) else [out]
        results.append(dict(text=text, masks=[[dict(score=c["score"], token=c["token"],
                                                     token_str=c["token_str"], sequence=c["sequence"])
                                                for c in mask] for mask in masks]))
    with open(os.path.join(d, "fill_mask.json"), "w") as f:
        json.dump(dict(results=results, transformers=transformers.__version__, torch=torch.__version__),
                  f, indent=1, ensure_ascii=False)


CLASSES = {c.__name__: c for c in (BertModel, BertForPreTraining, BertForMaskedLM, BertLMHeadModel,
                                   BertForNextSentencePrediction, BertForSequenceClassification,
                                   BertForMultipleChoice, BertForTokenClassification,
                                   BertForQuestionAnswering)}


def check_roundtrip(out_dir):
    """HF loads each directory the Rust side saved: no missing/unexpected keys, same outputs."""
    failures, checked = [], 0
    for case in sorted(os.listdir(out_dir)):
        d = os.path.join(out_dir, case)
        ref = os.path.join(HERE, case)
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        arch = json.load(open(os.path.join(d, "config.json")))["architectures"][0]
        model, info = CLASSES[arch].from_pretrained(d, output_loading_info=True)
        model.eval()
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            failures.append(f"{case}: {bad}")
        inputs = load_file(os.path.join(ref, "inputs.safetensors"))
        expected = load_file(os.path.join(ref, "outputs.safetensors"))
        if case == "token_cls":
            inputs["labels"] = torch.where(inputs["attention_mask"] == 1, inputs["labels"], torch.tensor(-100))
        with torch.no_grad():
            if case == "lm_head_generate":
                out = {"logits": model(input_ids=inputs["input_ids"]).logits}
            else:
                o = model(**inputs)
                out = {k: getattr(o, k) for k in expected if not k.startswith("grad.")}
        for k, v in out.items():
            diff = (v.float() - expected[k].float()).abs().max().item()
            if diff > 1e-4:
                failures.append(f"{case}.{k}: max abs diff {diff:.3g}")
        checked += 1
        print(f"round trip {case} ({arch}): ok" if not any(f.startswith(case) for f in failures) else f"round trip {case}: FAILED")
    if failures or checked == 0:
        print("\n".join(failures) or "no saved model directories found", file=sys.stderr)
        sys.exit(1)
    print(f"{checked} passed, 0 failed")


def compare(got_file, want_file, tol=1e-4):
    """Every tensor of WANT is in GOT (e.g. the `forward` example's output) within tol."""
    got, want = load_file(got_file), load_file(want_file)
    bad = []
    for k, w in want.items():
        if k.startswith("grad."):
            continue
        if k not in got:
            bad.append(f"{k}: missing")
        elif tuple(got[k].shape) != tuple(w.shape):
            bad.append(f"{k}: shape {tuple(got[k].shape)} != {tuple(w.shape)}")
        else:
            diff = (got[k].double() - w.double()).abs().max().item() if w.numel() else 0.0
            print(f"{k}: max abs diff {diff:.3g}")
            if diff > tol:
                bad.append(f"{k}: max abs diff {diff:.3g} > {tol}")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", nargs=2, metavar=("GOT", "WANT"), help="compare two output files (1e-4)")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 directory (from shared/fixtures/fetch.sh)")
    ap.add_argument("--check-roundtrip", help="directory of HF model directories written by Rust")
    ap.add_argument("--sharded", action="store_true", help="only (re)write qa_sharded from qa")
    ap.add_argument("--resized", action="store_true", help="only (re)write masked_lm_resized")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.check_roundtrip:
        check_roundtrip(args.check_roundtrip)
    elif args.sharded:
        make_sharded()
    elif args.resized:
        make_resized()
    else:
        make_all()
        make_sharded()
        make_resized()
        if args.minilm:
            make_minilm(args.minilm)
            make_fill_mask(args.minilm)
