"""Losses, train state, step functions and the training loop."""
