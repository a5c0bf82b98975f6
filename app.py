"""Try a trained checkpoint in the browser: upload garment photos, read the predicted attributes.

    streamlit run app.py -- --checkpoint outputs/demo/run/checkpoints/best.pt [--images-dir photos/]

Serves on localhost only (.streamlit/config.toml). The model is loaded once and shared by every session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from partial_csl.app.predictions import checkpoint_summary, describe, open_upload
from partial_csl.cli import add_option, make_parser
from partial_csl.engine.inference.predictor import Predictor, list_images


def parse_args() -> argparse.Namespace:
    p = make_parser(__doc__)
    add_option(p, "checkpoint", required=True, help="a checkpoint written by train.py (best.pt)")
    add_option(p, "images_dir", default=None, help="also offer the images of this folder")
    add_option(p, "device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    return p.parse_args(sys.argv[1:])


@st.cache_resource(show_spinner="loading the model ...")
def load_predictor(path: str, device: str) -> Predictor:
    return Predictor.from_checkpoint(path, device)


def show_result(result, threshold: float) -> None:
    st.subheader(result.name)
    left, right = st.columns([1, 2])
    left.image(result.image, width=192)
    if result.attributes is not None:
        table = result.attributes
        if "unsure" in table:
            unsure = table.loc[table["unsure"], "attribute"].tolist()
            if unsure:
                right.warning(f"unsure: {', '.join(unsure)} (infer.py would write #N/A: the probability is below "
                              "the checkpoint's threshold)")
            table = table.assign(unsure=table["unsure"].map({True: "unsure", False: ""}))
        right.table(table.style.format({c: "{:.3f}" for c in ("probability", "threshold") if c in table}))
        for attribute, series in result.class_probabilities.items():
            right.caption(attribute)
            right.bar_chart(series, height=160)
    else:
        cut = result.labels["threshold"] if "threshold" in result.labels else threshold  # tuned per class, if any
        shown = result.labels[result.labels["probability"] >= cut]
        right.table(shown.style.format({c: "{:.3f}" for c in ("probability", "threshold") if c in shown}))
        right.bar_chart(result.class_probabilities["labels"], height=200)


def main() -> None:
    args = parse_args()
    st.set_page_config(page_title="Garment attributes", layout="wide")
    st.title("Garment attribute prediction")
    try:
        predictor = load_predictor(args.checkpoint, args.device)
    except Exception as err:  # any load failure must reach the page, not a stack trace
        st.error(f"Cannot load checkpoint {args.checkpoint}: {err}")
        st.stop()
    with st.sidebar:
        st.header("Checkpoint")
        for key, value in checkpoint_summary(predictor, args.checkpoint).items():
            st.markdown(f"**{key}**: {value}")
        tuned = (predictor.info.thresholds or {}).get("classes")
        threshold = st.slider("label threshold", 0.0, 1.0, 0.5, 0.01) if predictor.schema is None and not tuned \
            else 0.5
    uploads = st.file_uploader("Garment photos", accept_multiple_files=True,
                               help="JPEG, PNG, ... (anything Pillow reads)")
    named = []
    for upload in uploads or []:
        image, error = open_upload(upload.name, upload.getvalue())
        if error:
            st.error(error)
        else:
            named.append((upload.name, image))
    if args.images_dir:
        root = Path(args.images_dir)
        chosen = st.multiselect(f"Or pick from {root}", [str(p.relative_to(root)) for p in list_images(root)])
        for name in chosen:
            image, error = open_upload(name, root / name)
            if error:
                st.error(error)
            else:
                named.append((name, image))
    for result in describe(predictor, named):
        show_result(result, threshold)


main()
