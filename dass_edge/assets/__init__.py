"""Shipped assets: the demo teacher (and later the meta-database and predictor)."""
