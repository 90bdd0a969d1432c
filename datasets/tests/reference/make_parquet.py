"""Writes the small Parquet files read by datasets/tests/formats.rs, with pyarrow's defaults
(snappy compression), as HF datasets writes them.

    pip install pyarrow   # made with pyarrow 26.0.1
    python3 datasets/tests/reference/make_parquet.py
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def write(name, table, **kwargs):
    path = HERE / name
    pq.write_table(table, path, **kwargs)
    meta = pq.ParquetFile(path).metadata
    codecs = {meta.row_group(g).column(c).compression
              for g in range(meta.num_row_groups) for c in range(meta.num_columns)}
    print(f"{name}: {meta.num_rows} rows, {meta.num_row_groups} row groups, {sorted(codecs)}")


# Text and string labels, over three row groups (two rows each).
write(
    "pq_text.parquet",
    pa.table({
        "text": ["a fine film", "dull and long", "café au lait ☕", "so-so", "loved it", "meh"],
        "label": ["pos", "neg", "pos", "neutral", "pos", "neg"],
    }),
    row_group_size=2,
)

# Sentence pairs with int64 labels and an unused column.
write(
    "pq_pairs.parquet",
    pa.table({
        "idx": pa.array([0, 1, 2], pa.int32()),
        "sentence1": ["A man plays.", "It rains.", "Cats sleep."],
        "sentence2": ["Someone plays.", "The sun shines.", "Dogs bark."],
        "label": pa.array([0, 2, 1], pa.int64()),
    }),
)

# As HF datasets saves a split: the label a ClassLabel, its names in the `huggingface`
# metadata (ids kept, names not sorted).
features = {
    "sentence": {"dtype": "string", "_type": "Value"},
    "label": {"names": ["unacceptable", "acceptable"], "_type": "ClassLabel"},
}
schema = pa.schema(
    [("sentence", pa.string()), ("label", pa.int64())],
    metadata={"huggingface": json.dumps({"info": {"features": features}})},
)
write(
    "pq_class_label.parquet",
    pa.table({"sentence": ["The book fell.", "Book the fell."], "label": [1, 0]}, schema=schema),
)

# Regression: float32 and float64 targets.
write(
    "pq_regression.parquet",
    pa.table({
        "sentence": ["a", "b", "c"],
        "score32": pa.array([0.1, 2.5, -1.0], pa.float32()),
        "score64": pa.array([0.1, 2.5, -1.0], pa.float64()),
    }),
)

# A null text in the second row; no `label` column.
write(
    "pq_nulls.parquet",
    pa.table({"text": ["fine", None, "also fine"], "target": ["x", "y", "x"]}),
)

# Already tokenized, as `datasets.map(tokenizer)` leaves it: int32 ids, int8 masks and types,
# right padding in the first row.
write(
    "pq_tokenized.parquet",
    pa.table({
        "input_ids": pa.array([[101, 7592, 102, 0, 0], [101, 2088, 102, 2003, 102]],
                              pa.list_(pa.int32())),
        "token_type_ids": pa.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]], pa.list_(pa.int8())),
        "attention_mask": pa.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], pa.list_(pa.int8())),
        "label": pa.array([1, 0], pa.int64()),
    }),
)
