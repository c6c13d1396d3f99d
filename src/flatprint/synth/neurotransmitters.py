"""Body- and type-level neurotransmitter predictions aggregated from per-T-bar predictions, as the
release's body-neurotransmitters table has them (rules in docs/schemas.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.release import tables as T

MONOAMINES = ("dopamine", "octopamine", "serotonin", "histamine")


def body_nt_table(nt_parts: list, ann: pa.Table, tbar_bodies: np.ndarray, type_names, type_ground_truth) -> pa.Table:
    """Aggregate T-bar predictions per body and per type (rules in docs/schemas.md).

    ``nt_parts``: per block, (body, top NT index, its probability) of the T-bars with a prediction;
    ``tbar_bodies``: the sorted bodies with T-bars; ``type_ground_truth``: the NT of each type, or None."""

    parts = nt_parts
    tb = pd.DataFrame(
        {
            "body": np.concatenate([p[0] for p in parts]),
            "top": np.concatenate([p[1] for p in parts]).astype(np.int64),
            "p": np.concatenate([p[2] for p in parts]),
        }
    )
    del parts
    ann_df = pd.DataFrame({"body": ann.column("bodyId").to_numpy(), "cell_type": ann.column("type").to_pylist()})
    type_of = dict(zip(ann_df["body"], ann_df["cell_type"]))
    tb["cell_type"] = tb["body"].map(type_of)
    gt_of = {t: g for t, g in zip(type_names, type_ground_truth) if g is not None}
    body_pred = majority(tb, "body", min_count=50)
    type_pred = majority(tb.dropna(subset=["cell_type"]), "cell_type", min_count=100)
    del tb
    bodies = np.union1d(tbar_bodies, ann_df.loc[ann_df["cell_type"].notna(), "body"].to_numpy())
    out = pd.DataFrame({"body": bodies})
    out["cell_type"] = out["body"].map(type_of)
    out = out.merge(body_pred.rename(columns={"key": "body"}), on="body", how="left")
    out["total_nt_predictions"] = out["total"].fillna(0).astype(np.int32)
    out["predicted_nt_confidence"] = out["confidence"].astype(float)
    out["predicted_nt"] = out["nt"].fillna("unclear")
    out["ground_truth"] = out["cell_type"].map(gt_of)
    tp = type_pred.set_index("key")
    out["celltype_total_nt_predictions"] = out["cell_type"].map(tp["total"]).fillna(0).astype(np.int32)
    out["celltype_predicted_nt"] = out["cell_type"].map(tp["nt"])
    out.loc[out["cell_type"].notna() & out["celltype_predicted_nt"].isna(), "celltype_predicted_nt"] = "unclear"
    out["celltype_predicted_nt_confidence"] = out["cell_type"].map(tp["confidence"]).astype(float)
    base = out["celltype_predicted_nt"].where(out["cell_type"].notna(), out["predicted_nt"])
    consensus = base.where(~base.isin(MONOAMINES), "unclear")
    out["consensus_nt"] = out["ground_truth"].where(out["ground_truth"].notna(), consensus)
    cols = [f.name for f in T.BODY_NEUROTRANSMITTERS]
    return pa.Table.from_pandas(out[cols], schema=T.BODY_NEUROTRANSMITTERS, preserve_index=False)


def majority(tb, key: str, min_count: int):
    """Per key: total predictions, most frequent top NT, mean probability of it; 'unclear' below thresholds."""

    if tb.empty:
        return pd.DataFrame(columns=["key", "total", "nt", "confidence"])
    counts = tb.groupby([key, "top"]).size().rename("n").reset_index()
    # ties: the alphabetically first transmitter (NT_NAMES is alphabetical)
    counts = counts.sort_values([key, "n", "top"], ascending=[True, False, True])
    best = counts.drop_duplicates(key)
    total = tb.groupby(key).size().rename("total")
    conf = tb.merge(best[[key, "top"]], on=[key, "top"]).groupby(key)["p"].mean().rename("confidence")
    res = best.set_index(key).join(total).join(conf).reset_index().rename(columns={key: "key"})
    names = np.array(T.NT_NAMES, dtype=object)
    res["nt"] = names[res["top"].to_numpy()]
    unclear = (res["total"] < min_count) | (res["confidence"] < 0.5)
    res.loc[unclear, "nt"] = "unclear"
    return res[["key", "total", "nt", "confidence"]]
