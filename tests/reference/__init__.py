"""Slow, plain-numpy reference implementations written from the TF.js formulas."""
