"""A tiny tfds dataset (PNG faces on disk → ArrayRecord) for the tfds source test."""

import tensorflow_datasets as tfds


class TinyFaces(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  IMAGE_DIR = ""

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(None, None, 3), encoding_format="png")}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(range(6)), "test": self._generate_examples(range(6, 8))}

  def _generate_examples(self, indices):
    for i in indices:
      # A path: tfds reads the encoded bytes itself, so no TensorFlow encoder is needed.
      yield str(i), {"image": f"{self.IMAGE_DIR}/{i}.png"}
