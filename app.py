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
from partial_csl.engine.predict import Predictor, list_images


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images-dir", default=None, help="also offer the images of this folder")
    p.add_argument("--device", default="auto")
    return p.parse_args(sys.argv[1:])


@st.cache_resource(show_spinner="loading the model ...")
def load_predictor(path: str, device: str) -> Predictor:
    return Predictor.from_checkpoint(path, device)


def show_result(result, threshold: float) -> None:
    st.subheader(result.name)
    left, right = st.columns([1, 2])
    left.image(result.image, width=192)
    if result.attributes is not None:
        right.table(result.attributes.style.format({"probability": "{:.3f}"}))
        for attribute, series in result.class_probabilities.items():
            right.caption(attribute)
            right.bar_chart(series, height=160)
    else:
        shown = result.labels[result.labels["probability"] >= threshold]
        right.table(shown.style.format({"probability": "{:.3f}"}))
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
        threshold = st.slider("label threshold", 0.0, 1.0, 0.5, 0.01) if predictor.schema is None else 0.5
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
