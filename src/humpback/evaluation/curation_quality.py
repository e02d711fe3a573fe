"""Curation quality: precision and recall of a selection against a stronger judge's labels.

The paper reports the precision and recall of M0's and M1's selections against labels of good
pairs; here the labels are any file of <id> -> label (bool/0/1) or score (>= threshold = good),
e.g. from a stronger judge or a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from humpback.errors import InputError
from humpback.readers import read_table


def load_labels(path: str | Path, *, id_column: str = "segment_id", threshold: float = 5) -> dict[str, bool]:
    """id -> good, from a `label` column (bool or 0/1) or else a `score` column (good at >= threshold)."""
    path = Path(path)
    df = read_table(path, columns=[id_column])
    if "label" in df.columns:
        col = df["label"]
        if col.dtype != pl.Boolean:
            bad = col.is_null() | ~col.cast(pl.String).is_in(["0", "1", "true", "false"])
            if bad.any():
                raise InputError(path, "'label' must be true/false or 0/1", int(bad.arg_true()[0]))
            col = col.cast(pl.String).is_in(["1", "true"])
        good = col.to_list()
    elif "score" in df.columns:
        scores = df["score"].cast(pl.Float64, strict=False)
        if scores.is_null().any():
            raise InputError(path, "'score' must be a number", int(scores.is_null().arg_true()[0]))
        good = (scores >= threshold).to_list()
    else:
        raise InputError(path, f"needs a 'label' or a 'score' column; has: {', '.join(df.columns)}")
    ids = df[id_column].cast(pl.String).to_list()
    if len(set(ids)) != len(ids):
        raise InputError(path, f"duplicate {id_column} values")
    return dict(zip(ids, (bool(g) for g in good), strict=True))


def precision_recall(selected: Iterable[str], labels: dict[str, bool]) -> dict:
    """Scores over the labelled ids only: precision = good among selected, recall = selected among good."""
    chosen = {str(s) for s in selected} & labels.keys()
    positives = {k for k, v in labels.items() if v}
    tp = len(chosen & positives)
    precision = tp / len(chosen) if chosen else None
    recall = tp / len(positives) if positives else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "precision": precision, "recall": recall, "f1": f1, "true_positives": tp,
        "n_selected_labelled": len(chosen), "n_positive": len(positives), "n_labelled": len(labels),
    }


def selection_quality(curated: str | Path, labels: dict[str, bool], *, id_column: str = "segment_id") -> dict:
    """precision_recall of the ids kept in a curated Parquet file."""
    df = read_kept(curated, id_column)
    return precision_recall(df[id_column].drop_nulls().cast(pl.String).to_list(), labels)


def read_kept(path: str | Path, id_column: str) -> pl.DataFrame:
    """A curated Parquet file, which may legitimately be empty (select.allow_empty)."""
    df = read_table(path, allow_empty=True)
    if id_column not in df.columns:
        raise InputError(path, f"missing column '{id_column}'; has: {', '.join(df.columns)}")
    return df
