#!/usr/bin/env python3
"""HF tokenizer references for `datasets/` tests.

    python3 datasets/tests/reference/make_tokenizer_reference.py MODEL_DIR

MODEL_DIR is all-MiniLM-L6-v2 from shared/fixtures/fetch.sh. Writes tokenizer.json beside this
script: for each case, HF `BertTokenizerFast` (tokenizer.json) ids, token types, attention mask,
offsets and word ids, and the slow `BertTokenizer` (vocab.txt) ids, for single texts, pairs,
the three truncation strategies and padding.
"""
import json
import os
import sys

import transformers
from transformers import BertTokenizer, BertTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))

SINGLES = [
    "Hello, world!",
    "Crème brûlée à la carte — naïve café résumé.",
    "東京は日本の首都です。北京 is in China.",
    "Don't stop; it's 3.14159 (approximately) & more...",
    "unaffable HuggingFace transformers tokenization",
    "   leading and trailing spaces   ",
    "Tabs\tand\nnewlines\r\nand\u00a0non-breaking spaces",
    "Emoji 🤗 and symbols ©®™ and math ∑∫√",
]
PAIRS = [
    ("How old are you?", "I'm six years old."),
    ("The quick brown fox jumps over the lazy dog near the riverbank.", "A short one."),
    ("Short.", "This second sequence is considerably longer than the first, with many more words in it."),
]


def enc(tok, a, b=None, **kw):
    e = tok(a, b, return_offsets_mapping=True, **kw)
    return {
        "input_ids": e["input_ids"], "token_type_ids": e["token_type_ids"],
        "attention_mask": e["attention_mask"], "offsets": [list(o) for o in e["offset_mapping"]],
        "word_ids": e.word_ids(), "tokens": e.tokens(),
    }


def main(model_dir):
    fast = BertTokenizerFast.from_pretrained(model_dir)
    slow = BertTokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
    cases = []
    for s in SINGLES:
        cases.append({"a": s, "b": None, "expected": enc(fast, s), "slow_ids": slow(s)["input_ids"]})
    for a, b in PAIRS:
        cases.append({"a": a, "b": b, "expected": enc(fast, a, b), "slow_ids": slow(a, b)["input_ids"]})
        for strategy in ("longest_first", "only_first", "only_second"):
            try:
                e = enc(fast, a, b, truncation=strategy, max_length=14)
            except Exception as ex:  # HF refuses a strategy that cannot reach max_length
                e = {"error": str(ex)}
            cases.append({"a": a, "b": b, "truncation": strategy, "max_length": 14, "expected": e})
    padded = fast([s for s in SINGLES[:3]], padding="longest", return_offsets_mapping=True)
    padding = {"texts": SINGLES[:3], "input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"],
               "token_type_ids": padded["token_type_ids"]}
    fixed = fast(SINGLES[0], padding="max_length", max_length=16)
    out = {"transformers": transformers.__version__, "cases": cases, "padding_longest": padding,
           "padding_max_length": {"text": SINGLES[0], "max_length": 16, "input_ids": fixed["input_ids"],
                                  "attention_mask": fixed["attention_mask"]}}
    with open(os.path.join(HERE, "tokenizer.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main(sys.argv[1])
