"""The DaSS accuracy predictor, its baselines and their evaluation."""
