"""The network itself: layers, activations, initializers, regularizers, losses, metrics,
optimizers and schedules, each a registry of small classes, and the Sequential model over them."""
