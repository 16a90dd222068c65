"""`refimpl reproduce nexus-placement`: refimpl's bootstrap plan per BERT-base layer beside the paper's Fig. 4.

NEXUS's Fig. 4 ("Placement of bootstrapping for a BERT-base transformer", §3.5) is an image
that the project's text of the paper does not carry. What the text and the official code
do give are the level budgets (refimpl/constants.toml [nexus.levels]: Sgn 16, GELU 18,
LayerNorm 18, Softmax 16, QuickMax round 17, a bootstrap leaves 14 levels of 40-bit primes);
from them, a bootstrap before each nonlinear block of a layer (Softmax, LayerNorm 1, GELU,
LayerNorm 2) is the least a placement can do: that is the "paper (inferred)" column, stated
as an inference. refimpl's column is read from the committed BERT-base plans at n = 128 on
the 128-bit ring (results/nexus/nexus_bertbase_128*.json, written by `refimpl experiment bertbase`):
per block, the level it enters at, the levels it uses, the ciphertexts it takes, the bootstrap
points in front of it and the ciphertexts they refresh (layer 1, a middle layer).

refimpl's objective is its own (refimpl.ckks.bootstrap.placement): the fewest ciphertexts
refreshed, then the fewest refresh points; `--weigh-by` plans minimise the derived time. The
paper states no objective; the committed files label the first "(NEXUS)", which no source
supports.
"""

from __future__ import annotations

from .paper import PaperTable, Row, add_json, emit, load_result

PLANS = (  # (result file, model, label)
    ("results/nexus/nexus_bertbase_128.json", "softmax-gelu", "Softmax + GELU, fewest refreshed"),
    ("results/nexus/nexus_bertbase_128.json", "2quad-freediv-quad", "2Quad-freeDiv + Quad, fewest refreshed"),
    ("results/nexus/nexus_bertbase_128_placement_time.json", "2quad-freediv-quad", "2Quad-freeDiv + Quad, least time"),
)
NONLINEAR = ("Softmax", "residual + LayerNorm 1", "GELU", "residual + LayerNorm 2")


def block_table(model: dict) -> str:
    """The per-block plan of the layer shown, as Markdown."""
    lines = ["| block | level in | levels | ciphertexts in | bootstrap points | ciphertexts refreshed | level out |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for b in model["layer_blocks"]:
        lines.append(f"| {b['kind']} | {b['level_in']} | {b['levels']} | {b['ciphertexts_in']} | {b['bootstrap_points']} | "
                     f"{b['ciphertexts_refreshed']} | {b['level_out']} |")
    return "\n".join(lines)


def build() -> PaperTable:
    """Read the committed plans and assemble the table."""
    t = PaperTable("nexus-placement", "NEXUS bootstrap placement for BERT-base (Fig. 4) and refimpl's plans",
                   "NEXUS (Zhang et al., NDSS 2025) §3.5, Fig. 4 (an image, not in the project's text of the paper); "
                   "level budgets from refimpl/constants.toml [nexus.levels]")
    extra = {"plans": []}
    for path, name, label in PLANS:
        doc = load_result(path)
        m = doc["models"][name]
        per_layer = m["per_layer"][m["layer_shown"]]
        nonlinear_points = sum(b["bootstrap_points"] for b in m["layer_blocks"] if b["kind"] in NONLINEAR)
        t.rows += [
            Row(f"{label}: bootstrap points per layer", "4 (inferred)", per_layer["bootstrap_points"], compare="none",
                note=f"{nonlinear_points} in front of nonlinear blocks; {path}"),
            Row(f"{label}: ciphertexts refreshed per layer", None, per_layer["ciphertexts_refreshed"], compare="none",
                note=f"levels used {per_layer['levels']}"),
            Row(f"{label}: model bootstrap points / ciphertexts refreshed", "48 + Argmax (inferred)",
                f"{m['total']['bootstrap_points']} / {m['total']['ciphertexts_refreshed']}", compare="none",
                note=f"levels used {m['total']['levels']}; after a refresh {doc['levels_after_bootstrap']} levels"),
        ]
        t.sections.append(f"{label} (layer {m['layer_shown']}, {path}):\n\n" + block_table(m))
        extra["plans"].append({"file": path, "model": name, "label": label, "layer_blocks": m["layer_blocks"],
                               "per_layer": m["per_layer"], "total": m["total"]})
    t.extra = extra
    t.sections.append(
        "Reading: the paper's placement (by its level budgets) refreshes once in front of each nonlinear block. "
        "refimpl's bootstrapper leaves 19 levels (the 128-bit set, 2^16), and its placement refreshes where the "
        "fewest ciphertexts are alive: in Softmax + GELU layers inside Softmax (between QuickMax rounds, 9 points "
        "over the 12 score ciphertexts), before LayerNorm 1, FFN1 and FFN2 (GELU runs on the FFN1 output without "
        "a refresh of its own); in 2Quad-freeDiv + Quad layers 3-4 points, set by LayerNorm's 17-27 levels (neither 2Quad-freeDiv nor Quad "
        "needs a Sgn).")
    t.differences += [
        "Fig. 4 itself is not available as text: the paper column is an inference from the level budgets.",
        "refimpl's ring leaves 19 levels after a bootstrap (log2 PQ = 1760, 128-bit), the official code's 14.",
        "The plan objective (fewest ciphertexts refreshed) is refimpl's; the paper states none.",
    ]
    return t


add_arguments = add_json  # the table's one option: --json FILE


def run(args) -> int:
    """`refimpl reproduce nexus-placement [--json FILE]`."""
    return emit(build(), args)


__all__ = ["build", "block_table", "add_arguments", "run", "PLANS"]
