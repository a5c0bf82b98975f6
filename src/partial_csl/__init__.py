"""partial_csl: multi-label image classification from partially labelled data (CSL, TResNet, InPlace-ABN).

    from partial_csl import Predictor, TrainConfig, run_training, validate_checkpoint

    summary = run_training(TrainConfig(train_csv="train.csv", val_csv="valid.csv", images="images/", epochs=30,
                                       output_dir="outputs/run1"))
    report = validate_checkpoint(summary["best_checkpoint"], "outputs/run1/test_report", csv_path="test.csv",
                                 images="images/")
    probabilities = Predictor.from_checkpoint(summary["best_checkpoint"]).predict([pil_image])

The command-line scripts (train.py, validate.py, infer.py, export.py, images_train_test_valid_split.py) are thin
wrappers of these functions.
"""

from .engine.config import TrainConfig
from .engine.inference.predictor import Predictor
from .engine.tools.validate import validate_checkpoint
from .engine.training.trainer import run_training

__version__ = "0.2.0"
__all__ = ["Predictor", "TrainConfig", "__version__", "run_training", "validate_checkpoint"]
