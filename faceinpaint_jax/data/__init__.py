"""Face sources, hole masks and the deterministic input pipeline."""

from faceinpaint_jax.data.pipeline import InputPipeline
from faceinpaint_jax.data.sources import Source, SourceError, make_source

__all__ = ["InputPipeline", "Source", "SourceError", "make_source"]
