"""A tiny tfds dataset package for tests."""
