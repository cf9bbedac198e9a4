"""The training loop (Trainer, fit), its callbacks and exact resume."""
