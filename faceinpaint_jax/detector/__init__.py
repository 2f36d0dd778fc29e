"""Face detection with five landmarks (MTCNN), for framing real photos as the training faces were framed."""

from faceinpaint_jax.detector.mtcnn import MTCNN, Face
from faceinpaint_jax.detector.weights import load_mtcnn_variables

__all__ = ["MTCNN", "Face", "load_mtcnn_variables"]
