"""The back-ends of the scripts: validate.py, infer.py, export.py, images_train_test_valid_split.py."""
