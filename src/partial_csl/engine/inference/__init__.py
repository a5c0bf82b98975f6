"""Prediction from a checkpoint: the predictor (model + preprocessing + classes), the probability loop,
the thresholds a checkpoint stores."""
