"""Training with XTuner: train, convert, merge, the tiny stand-in models, the CPU runner; train env."""
