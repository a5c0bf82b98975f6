#!/usr/bin/env bash
# The whole pipeline on the embedded demo data, on CPU: build data -> split -> training (train.py's default for
# attribute data: CSL, a temporary ignore-mode model for the class priors, then the selective loss) -> validate on the
# test split -> infer on the test images. Safe to run twice (a finished run is resumed, i.e. reused). Override with
# environment variables, e.g. EPOCHS=2 TRAIN_ARGS=--no-amp bash scripts/demo.sh; one softmax head per attribute under
# class-balanced weights (the alternative that won with ResNet-18) is TRAIN_ARGS="--arch mtl" OUT=outputs/demo_heads.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/demo}
DATA=${DATA:-data/demo}
EPOCHS=${EPOCHS:-8}
mkdir -p "$OUT"

$PY scripts/build_demo_data.py --out "$DATA"
$PY images_train_test_valid_split.py --csv "$DATA/attributes.csv" --images "$DATA/images" --output-dir "$OUT/split" \
    --seed 0 > "$OUT/split.log" 2>&1 || { cat "$OUT/split.log"; exit 1; }
echo "split: $OUT/split (distribution table $OUT/split/split_distribution.md)"
$PY train.py --train-csv "$OUT/split/train.csv" --val-csv "$OUT/split/valid.csv" --images "$DATA/images" \
    --model-name tresnet_m --image-size 64 --batch-size 32 --workers 0 --cache-images \
    --epochs "$EPOCHS" --lr 5e-4 --augment light --ema-decay 0.99 --seed 0 --output-dir "$OUT/run" --resume ${TRAIN_ARGS:-}
$PY validate.py --checkpoint "$OUT/run/checkpoints/best.pt" --csv "$OUT/split/test.csv" --images "$DATA/images" \
    --output-dir "$OUT/test_report"
$PY infer.py --checkpoint "$OUT/run/checkpoints/best.pt" --csv "$OUT/split/test.csv" --images "$DATA/images" \
    --output "$OUT/test_predictions.csv"
echo
echo "done. evaluation report: $OUT/test_report/report.html (open it in a browser; numbers: report.md);"
echo "predictions: $OUT/test_predictions.csv (per-image errors: $OUT/test_report/predictions.csv);"
echo "training curves: $OUT/run/metrics.csv (tensorboard --logdir $OUT/run/tensorboard)"
