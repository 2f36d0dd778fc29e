"""Metrics against scikit-image, the evaluation report, and inpainting real photos."""

import json
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from faceinpaint_jax import assets, metrics
from faceinpaint_jax.baselines import BASELINES
from faceinpaint_jax.data.preprocess import decode_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sk_ssim(a, b):
  return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                               data_range=1.0, channel_axis=-1)


def _real_pair():
  face = decode_image(str(assets.sample_faces_dir() / "000950.jpg"))[:128, :128].astype(np.float32) / 255
  rng = np.random.default_rng(1)
  return face, np.clip(face + rng.normal(0, 0.05, face.shape), 0, 1).astype(np.float32)


def test_psnr_ssim_match_scikit_image_on_random_and_real_images():
  rng = np.random.default_rng(0)
  a = rng.random((3, 48, 40, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  real_a, real_b = _real_pair()
  for x, y in [(a, b), (real_a[None], real_b[None])]:
    np.testing.assert_allclose(metrics.ssim(x, y), [_sk_ssim(p, q) for p, q in zip(x, y)], atol=1e-4)
    np.testing.assert_allclose(metrics.psnr(x, y), [peak_signal_noise_ratio(p, q, data_range=1.0)
                                                    for p, q in zip(x, y)], atol=1e-4)


def test_hole_metrics_only_see_the_hole():
  a = np.zeros((1, 16, 16, 3), np.float32)
  b = a.copy()
  b[0, 4:8, 4:8] = 0.5
  hole = np.zeros((1, 16, 16, 1), np.float32)
  hole[0, 4:8, 4:8] = 1
  np.testing.assert_allclose(metrics.l1(a, b, hole), 0.5)
  np.testing.assert_allclose(metrics.l1(a, b), 0.5 * 16 / 256)
  np.testing.assert_allclose(metrics.psnr(a, b, hole), 10 * np.log10(1 / 0.25), rtol=1e-6)


def test_lpips_zero_for_identical_and_grows_with_noise():
  model, params = metrics.LPIPS(), metrics.lpips_params()
  face, _ = _real_pair()
  x = jnp.asarray(face[None] * 2 - 1)
  dist = jax.jit(model.apply)
  values = [float(dist(params, x, jnp.clip(x + s * jax.random.normal(jax.random.key(0), x.shape), -1, 1))[0])
            for s in (0.0, 0.05, 0.2, 0.5)]
  assert values[0] < 1e-12
  assert values[1] < values[2] < values[3]


def test_baselines_change_only_the_hole():
  face = decode_image(str(assets.sample_faces_dir() / "000950.jpg"))[:64, :64]
  hole = np.zeros((64, 64, 1), np.float32)
  hole[20:40, 20:40] = 1
  for name, fn in BASELINES.items():
    out = fn(face, hole)
    assert out.shape == face.shape and out.dtype == np.uint8, name
    np.testing.assert_array_equal(out[hole[..., 0] == 0], face[hole[..., 0] == 0])


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=REPO)


def _sk_image_means(out, report, method, suffix=""):
  """Mean PSNR and SSIM of a method's saved completions by scikit-image, straight from the PNGs."""
  psnrs, ssims = [], []
  for image_id in report["image_ids"]:
    stem = os.path.splitext(image_id)[0]
    load = lambda d, s: np.asarray(Image.open(out / "completions" / d / f"{stem}{s}.png"), np.float64) / 255
    got, truth = load(method, suffix), load("ground_truth", "")
    psnrs.append(peak_signal_noise_ratio(truth, got, data_range=1.0))
    ssims.append(_sk_ssim(got, truth))
  return np.mean(psnrs), np.mean(ssims)


@pytest.mark.slow
def test_evaluate_report_agrees_with_scikit_image_on_the_saved_pngs(trained_workdir, tmp_path):
  from faceinpaint_jax.data import make_source
  from faceinpaint_jax.evaluate import select_images
  out = tmp_path / "eval"
  result = _run("faceinpaint_jax.evaluate", "--workdir", trained_workdir, "--data", "sample", "--protocol",
                "center", "--num", 12, "--batch", 4, "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((out / "report.json").read_text())
  assert report["num_images"] == 12 and len(report["image_ids"]) == 12
  # A seeded random choice of 12 of the 100 test faces, not the first 12.
  from faceinpaint_jax.config import load_config_file
  split = make_source(load_config_file(os.path.join(REPO, "configs", "tiny.py")).data).split("test")
  assert report["image_ids"] == [split.key(int(i)) for i in select_images(100, 12, seed=0)]
  assert report["image_ids"] != [split.key(i) for i in range(12)]
  assert "12 of 100 chosen at random with seed 0" in (out / "report.md").read_text()
  assert set(report["methods"]) == {"this_model", "mean_fill", "opencv_telea", "opencv_navier_stokes"}
  assert 0.0 <= report["attention_iou"] <= 1.0 and report["data_range"] == "[0, 1]"
  assert (out / "report.md").exists() and (out / "grid.png").exists()
  for method in ("this_model", "opencv_telea"):
    psnr, ssim = _sk_image_means(out, report, method)
    assert abs(psnr - report["methods"][method]["psnr"]) < 0.05
    assert abs(ssim - report["methods"][method]["ssim"]) < 0.002
  # FID and KID for every method against the ground truth, each defined in the report.
  for method, row in report["methods"].items():
    assert np.isfinite(row["fid"]) and row["fid"] > 0 and np.isfinite(row["kid"]) and row["kid_std"] >= 0, method
  assert report["kid_subset_size"] == 6
  text = (out / "report.md").read_text()
  assert "| FID | KID |" in text and all(f"- **{k}**:" in text for k in ("fid", "kid", "lpips hole", "ssim hole"))
  # The center protocol at 32×32 is a 16×16 hole in the middle, identical for every method.
  mask = np.asarray(Image.open(out / "completions" / "masks" / f"{os.path.splitext(report['image_ids'][0])[0]}.png"))
  assert mask.sum() == 16 * 16 * 255 and mask[8:24, 8:24].all()


@pytest.mark.slow
def test_growing_protocol_runs_every_image_at_every_hole_size(trained_workdir, tmp_path):
  from faceinpaint_jax.data.masks import GROWING_SIZES
  out = tmp_path / "eval"
  result = _run("faceinpaint_jax.evaluate", "--workdir", trained_workdir, "--protocol", "growing", "--num", 4,
                "--batch", 4, "--no-fid", "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((out / "report.json").read_text())
  assert list(report["by_hole_size"]) == [str(s) for s in GROWING_SIZES] and report["num_images"] == 4
  stem = os.path.splitext(report["image_ids"][0])[0]
  for side in GROWING_SIZES:  # the same faces at each size, a centred square of side·32/128 px
    px = side * 32 // 128
    mask = np.asarray(Image.open(out / "completions" / "masks" / f"{stem}_hole{side}.png")) > 127
    top = (32 - px) // 2
    assert mask.sum() == px * px and mask[top:top + px, top:top + px].all()
    psnr, _ = _sk_image_means(out, report, "opencv_telea", f"_hole{side}")
    assert abs(psnr - report["by_hole_size"][str(side)]["opencv_telea"]["psnr"]) < 0.05
  # Larger holes are harder for every method; the overall row is the mean over sizes.
  for method in report["methods"]:
    by_size = [report["by_hole_size"][str(s)][method]["psnr"] for s in GROWING_SIZES]
    assert by_size[0] > by_size[-1], method
    np.testing.assert_allclose(report["methods"][method]["psnr"], np.mean(by_size), rtol=1e-6)
  text = (out / "report.md").read_text()
  assert text.count("### Hole ") == len(GROWING_SIZES) and "FID" not in text.split("Definitions")[0]
  plot = np.asarray(Image.open(out / "growing.png"))
  assert plot.shape[0] > 200 and plot.shape[1] > 600 and plot.std() > 10


def test_lpips_hole_box_covers_the_hole_grown_to_the_minimum_and_a_multiple_of_8():
  from faceinpaint_jax.metrics import hole_box
  hole = np.zeros((64, 64, 1), np.float32)
  hole[16:48, 16:48] = 1
  assert hole_box(hole) == (16, 16, 32, 32)
  hole[:] = 0
  hole[30:34, 2:5] = 1  # 4×3 near the left edge: 16×16 around it, kept inside the image
  assert hole_box(hole) == (24, 0, 16, 16)
  hole[:] = 0
  hole[10:31, 40:60] = 1  # 21×20 → 24×24
  top, left, height, width = hole_box(hole)
  assert (height, width) == (24, 24) and top <= 10 and top + 24 >= 31 and left <= 40 and left + 24 >= 60
  assert hole_box(np.zeros((64, 64, 1))) == (0, 0, 64, 64)


def test_random_image_selection_is_seeded_sorted_and_complete_when_asked_for_all():
  from faceinpaint_jax.evaluate import select_images
  chosen = select_images(1000, 20, seed=3)
  assert len(set(chosen)) == 20 and list(chosen) == sorted(chosen) and chosen.max() > 100
  np.testing.assert_array_equal(chosen, select_images(1000, 20, seed=3))
  assert not np.array_equal(chosen, select_images(1000, 20, seed=4))
  np.testing.assert_array_equal(select_images(50, 0, 0), np.arange(50))
  np.testing.assert_array_equal(select_images(50, 80, 0), np.arange(50))


@pytest.mark.slow
def test_inpaint_keeps_pixels_outside_the_mask_and_rejects_bad_input(trained_workdir, tmp_path):
  face = decode_image(str(assets.sample_faces_dir() / "000950.jpg"))
  Image.fromarray(face).save(tmp_path / "photo.png")
  mask = np.zeros(face.shape[:2], np.uint8)
  mask[80:130, 60:120] = 255
  Image.fromarray(mask).save(tmp_path / "mask.png")
  for blend in ("none", "poisson"):
    out = tmp_path / f"out_{blend}.png"
    result = _run("faceinpaint_jax.inpaint", "--workdir", trained_workdir, "--input", tmp_path / "photo.png",
                  "--output", out, "--mask", tmp_path / "mask.png", "--blend", blend)
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.asarray(Image.open(out))
    assert got.shape == face.shape
    np.testing.assert_array_equal(got[mask == 0], face[mask == 0])

  Image.fromarray(mask[:100]).save(tmp_path / "small_mask.png")
  Image.fromarray(np.zeros_like(mask)).save(tmp_path / "empty.png")
  Image.fromarray(np.full_like(mask, 255)).save(tmp_path / "full.png")
  (tmp_path / "notes.png").write_text("not an image")
  cases = [("--mask", tmp_path / "small_mask.png"), ("--mask", tmp_path / "empty.png"),
           ("--mask", tmp_path / "full.png")]
  for flag, value in cases:
    r = _run("faceinpaint_jax.inpaint", "--workdir", trained_workdir, "--input", tmp_path / "photo.png",
             "--output", tmp_path / "bad.png", flag, value)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
  r = _run("faceinpaint_jax.inpaint", "--workdir", trained_workdir, "--input", tmp_path / "notes.png",
           "--output", tmp_path / "bad.png")
  assert r.returncode == 2 and "not a readable image" in r.stderr
  r = _run("faceinpaint_jax.inpaint", "--workdir", tmp_path / "nothing", "--input", tmp_path / "photo.png",
           "--output", tmp_path / "bad.png", "--mask", tmp_path / "mask.png")
  assert r.returncode == 2 and "no trained run" in r.stderr
  assert not (tmp_path / "bad.png").exists()


@pytest.mark.slow
def test_ablation_runner_trains_evaluates_and_tabulates_the_baseline(tmp_path):
  """Two variants through the runner on the tiny config: equal planned budgets, trained in interleaved
  rounds, a table, a grid, and the mask-given baseline evaluated (no attention IoU) and usable by
  `inpaint` only with a mask."""
  out = tmp_path / "ablate"
  labels = ["full", "baseline[train.g_learning_rate=1e-3]"]
  result = _run("faceinpaint_jax.ablate", "--config", os.path.join(REPO, "configs", "tiny.py"),
                "--budget-minutes", 0.05, "--pilot-steps", 3, "--pilot-rounds", 1, "--rounds", 2, "--clock", "cpu",
                "--variants", ",".join(labels), "--num", 8, "--rows", 2, "--no-fid", "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  # Every pilot before any training; rounds alternate the order, so neither variant always runs first.
  events = re.findall(r"^\[(.+?)\] (timing a pilot|round \d|first round)", result.stdout, re.M)
  assert events == [(labels[0], "timing a pilot"), (labels[1], "timing a pilot"), (labels[0], "round 1"),
                    (labels[1], "round 1"), (labels[0], "first round"), (labels[1], "first round"),
                    (labels[1], "round 2"), (labels[0], "round 2")], events
  results = json.loads((out / "results.json").read_text())
  assert results["clock"] == "cpu"
  full, baseline = results["variants"]["full"], results["variants"]["baseline[train.g_learning_rate=1e-3]"]
  assert 0.0 <= full["attention_iou"] <= 1.0 and baseline["attention_iou"] is None
  assert baseline["overrides"] == {"model.attentive": False, "train.gan": False, "loss.semantic": 0.0,
                                   "train.g_learning_rate": 1e-3}
  for row in (full, baseline):
    assert row["steps"] >= 2 and np.isfinite(row["psnr_hole"]) and row["lpips"] > 0
    # Planned to the budget: the steps that the measured seconds per iteration fit into 3 s (at least 2),
    # or, when the first round ran so slowly (a loaded machine) that the budget ends inside it, its steps.
    share = row["stage1_steps"] / row["steps"]
    per_step = share * row["seconds_per_iteration"]["stage1"] + (1 - share) * row["seconds_per_iteration"]["stage2"]
    assert (row["steps"] == 2 or abs(row["steps"] * per_step - 3.0) < 2 * per_step
            or row["steps"] == row["rounds"][0]["steps_to"])
    assert 0 < row["train_loop_seconds"] < row["train_seconds"]
    # By the CPU clock (CPU seconds over the cores), never more than the same loop's wall seconds.
    assert row["train_loop_seconds"] <= row["train_loop_wall_seconds"] * 1.01
    # Round 1 goes half way along the pilot's plan; then the variant is planned again from that round.
    assert [r["steps_to"] for r in row["rounds"]] == [math.ceil(row["initial_steps"] / 2), row["steps"]]
    assert row["train_loop_seconds"] == pytest.approx(sum(r["loop_seconds"] for r in row["rounds"]))
    # (a later round has nothing left to train when the first one already reached the budget)
    assert row["rounds"][0]["loop_seconds"] > 0 and all(r["loop_seconds"] >= 0 for r in row["rounds"])
  assert not (out / "pilot").exists()  # the timing runs leave nothing behind
  from faceinpaint_jax.ablate import _dirname
  workdir = out / _dirname("baseline[train.g_learning_rate=1e-3]")
  assert workdir.name == "baseline_train.g_learning_rate=1e-3"
  config = json.loads((workdir / "config.json").read_text())
  assert config["model"]["attentive"] is False and config["train"]["steps"] == baseline["steps"]
  # The chunks shared one schedule, whose horizon is the planned run, not the first chunk's end.
  assert config["train"]["decay_steps"] == baseline["steps"]
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())[-1] == baseline["steps"]
  table = (out / "results.md").read_text()
  assert "| full |" in table and "| baseline[train.g_learning_rate=1e-3] |" in table
  grid = np.asarray(Image.open(out / "grid.png"))
  assert grid.shape[0] > 0 and (out / "grid_columns.txt").read_text().count(",") == 3

  face = decode_image(str(assets.sample_faces_dir() / "000950.jpg"))
  Image.fromarray(face).save(tmp_path / "photo.png")
  mask = np.zeros(face.shape[:2], np.uint8)
  mask[80:130, 60:120] = 255
  Image.fromarray(mask).save(tmp_path / "mask.png")
  r = _run("faceinpaint_jax.inpaint", "--workdir", workdir, "--input", tmp_path / "photo.png",
           "--output", tmp_path / "out.png", "--mask", tmp_path / "mask.png")
  assert r.returncode == 0, r.stderr[-3000:]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png"))[mask == 0], face[mask == 0])
  r = _run("faceinpaint_jax.inpaint", "--workdir", workdir, "--input", tmp_path / "photo.png",
           "--output", tmp_path / "blind.png")
  assert r.returncode == 2 and "--mask" in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "blind.png").exists()


def test_ablation_variant_specs():
  from faceinpaint_jax.ablate import apply_overrides, parse_variants
  from faceinpaint_jax.cli import UserError
  from faceinpaint_jax.config import ConfigError, load_config_file
  variants = parse_variants("full, no_gan[train.b1=0.5;model.norm='group'],baseline")
  assert [v[0] for v in variants] == ["full", "no_gan[train.b1=0.5;model.norm='group']", "baseline"]
  assert variants[1][2] == {"train.gan": False, "train.b1": 0.5, "model.norm": "group"}
  for bad in ("nonsense", "full,full", "full[train.b1]", ""):
    with pytest.raises(UserError):
      parse_variants(bad)
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  assert apply_overrides(config, variants[1][2]).model.norm == "group"
  assert config.model.norm == "batch"  # the base config is not modified
  with pytest.raises(ConfigError):
    apply_overrides(config, {"train.stepz": 3})
  with pytest.raises(ConfigError):
    apply_overrides(config, {"model.norm": "layer"})


def test_ablation_seeds_replicate_each_variant_and_summarise_its_spread():
  """--seeds N: every variant N times, seed-major, labelled as the same replica listed by hand would be;
  the table's summary gives each variant's mean ± sample sd and its difference from the first variant."""
  from faceinpaint_jax.ablate import _variant_of, parse_variants, seed_summary, with_seeds
  from faceinpaint_jax.cli import UserError
  variants = parse_variants("baseline,full[loss.semantic=0.2]")
  assert with_seeds(variants, 1, 0) == variants
  replicas = with_seeds(variants, 2, 3)
  assert [r[0] for r in replicas] == ["baseline[train.seed=3]", "full[loss.semantic=0.2;train.seed=3]",
                                      "baseline[train.seed=4]", "full[loss.semantic=0.2;train.seed=4]"]
  assert replicas[3][2] == {"loss.semantic": 0.2, "train.seed": 4}
  # The label parses back to the same overrides, so a replica can also be listed by hand.
  assert parse_variants(replicas[3][0])[0][2] == replicas[3][2]
  assert [_variant_of(r[0]) for r in replicas] == ["baseline", "full[loss.semantic=0.2]"] * 2
  assert _variant_of("full[train.seed=1;loss.semantic=0.2]") == "full[loss.semantic=0.2]"
  with pytest.raises(UserError, match="train.seed"):
    with_seeds(parse_variants("full[train.seed=1]"), 2, 0)

  row = lambda variant, seed, psnr, lpips: {"variant": variant, "seed": seed, "psnr_hole": psnr, "ssim": 0.8,
                                            "lpips": lpips, "kid": None, "steps": 100 + seed}
  rows = {"b0": row("baseline", 0, 18.0, 0.12), "f0": row("full", 0, 17.8, 0.11),
          "b1": row("baseline", 1, 18.2, 0.13), "f1": row("full", 1, 17.9, 0.12)}
  table = seed_summary(rows)
  assert table[-2].startswith("| baseline | 0, 1 | 18.10 ± 0.14 | +0.00 | 0.8000 ± 0.0000 | 0.1250 ± 0.0071 ")
  assert table[-1].startswith("| full | 0, 1 | 17.85 ± 0.07 | -0.25 |") and "| -0.0100 |" in table[-1]
  assert "| — |" in table[-1] and table[-1].endswith("| 100 ± 1 |")
  assert seed_summary({"b0": rows["b0"], "f0": rows["f0"]}) == []  # one seed each: nothing to summarise
  # Rows of replicas listed by hand, from before rows named their variant and seed: both from the label.
  by_hand = {f"baseline[train.seed={s}]": {**rows[f"b{s}"], "overrides": {"train.seed": s}} for s in (0, 1)}
  for r in by_hand.values():
    del r["variant"], r["seed"]
  assert seed_summary(by_hand)[-1] == table[-2]


@pytest.mark.slow
def test_ablation_seeds_time_once_and_train_each_seed(tmp_path):
  """--seeds 2 through the runner: one pilot for the variant's two replicas, both planned from it, two
  different models (their seeds differ), and the summary row over both."""
  out = tmp_path / "ablate"
  result = _run("faceinpaint_jax.ablate", "--config", os.path.join(REPO, "configs", "tiny.py"),
                "--budget-minutes", 0.05, "--pilot-steps", 3, "--pilot-rounds", 1, "--rounds", 1, "--clock", "cpu",
                "--variants", "full", "--seeds", 2, "--num", 4, "--rows", 2, "--no-fid", "--out", out)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.findall(r"^\[(.+?)\] timing a pilot", result.stdout, re.M) == ["full[train.seed=0]"]
  rows = json.loads((out / "results.json").read_text())["variants"]
  assert list(rows) == ["full[train.seed=0]", "full[train.seed=1]"]
  first, second = rows.values()
  assert (first["seed"], second["seed"]) == (0, 1) and first["variant"] == second["variant"] == "full"
  assert first["pilot_seconds_per_iteration"] == second["pilot_seconds_per_iteration"]
  for r, seed in ((first, 0), (second, 1)):
    config = json.loads((out / f"full_train.seed={seed}" / "config.json").read_text())
    assert config["train"]["seed"] == seed
  assert first["psnr_hole"] != second["psnr_hole"]
  mean = (first["psnr_hole"] + second["psnr_hole"]) / 2
  assert f"| full | 0, 1 | {mean:.2f} ± " in (out / "results.md").read_text()


@pytest.mark.slow
def test_blind_and_toned_evaluation(trained_workdir, tmp_path):
  """--blind: every fill kind, IoU and the uncovered share of the hole in range, PSNR with the blind mask
  never above the true mask's; --tone grey: the model's fills stay grey (chroma 0) like the prints."""
  from faceinpaint_jax.data.masks import HOLE_FILLS
  from faceinpaint_jax.evaluate import evaluate, evaluate_blind
  from faceinpaint_jax.blind import BlindMaskSettings
  report = evaluate_blind(trained_workdir, "sample", 4, tmp_path / "blind", batch_size=4,
                          settings=[BlindMaskSettings(), BlindMaskSettings(grow_flat=False)])
  assert list(report["by_fill"]) == list(HOLE_FILLS)
  for fill, (row, not_grown) in report["by_fill"].items():
    assert 0 <= row["iou"] <= 1 and 0 <= row["uncovered"] <= 1, fill
    assert np.isfinite(row["psnr_hole"]) and np.isfinite(row["psnr_hole_true_mask"])
    assert row["uncovered"] <= not_grown["uncovered"], fill  # growth only adds (test_blind: by how much)
  assert (tmp_path / "blind" / "blind_grid.png").exists() and "| white |" in (tmp_path / "blind" / "report.md").read_text()
  # --protocol growing: the same rows for each centred hole size.
  from faceinpaint_jax.data.masks import GROWING_SIZES
  growing = evaluate_blind(trained_workdir, "sample", 2, tmp_path / "blind_growing", batch_size=2,
                           protocol="growing")
  assert list(growing["by_hole_size"]) == [str(side) for side in GROWING_SIZES] and "by_fill" not in growing
  assert all(list(by_fill) == list(HOLE_FILLS) for by_fill in growing["by_hole_size"].values())
  true_mask_psnr = [growing["by_hole_size"][str(side)]["noise"][0]["psnr_true_mask"] for side in GROWING_SIZES]
  assert np.all(np.diff(true_mask_psnr) < 0)  # each size its own hole: larger holes, more to fill
  markdown = (tmp_path / "blind_growing" / "report.md").read_text()
  assert markdown.count("| white |") == len(GROWING_SIZES) and "### Hole 16×16 at 128×128" in markdown
  report = evaluate(trained_workdir, "sample", "center", 4, tmp_path / "grey", batch_size=4, fid=False, tone="grey",
                    fill="white")
  chroma = report["chroma"]
  assert chroma["this_model"]["fill"] < 1.0 and chroma["ground_truth"]["fill"] < 1.0
  assert chroma["opencv_telea"]["surrounding"] < 1.0 and report["hole_fill"] == "white"
  saved = np.asarray(Image.open(next((tmp_path / "grey" / "completions" / "this_model").iterdir())), np.int16)
  assert np.abs(saved[..., 0] - saved[..., 1]).max() <= 1  # a grey image on disk


def test_blind_evaluation_of_a_protocol_it_cannot_run_is_one_line(tmp_path, capsys):
  from faceinpaint_jax import evaluate
  assert evaluate.main(["--workdir", str(tmp_path / "nowhere"), "--blind", "--protocol",
                        "fixed_size_random_position", "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: --blind evaluates the center or growing protocol, not 'fixed_size_random_position'"]
  assert not (tmp_path / "out").exists()


def test_ablation_clocks_read_the_training_log(tmp_path):
  """`--clock wall` times a window by its images/s, `--clock cpu` by its CPU seconds over the usable cores;
  a log without CPU time cannot be planned by the CPU clock (one clear error)."""
  from faceinpaint_jax import ablate
  from faceinpaint_jax.cli import UserError
  log = tmp_path / "metrics.jsonl"
  rows = [{"step": 10, "stage": 1, "images_per_sec": 40.0, "cpu_seconds": 6.0},
          {"step": 20, "stage": 2, "images_per_sec": 20.0, "cpu_seconds": 12.0},
          {"step": 5, "stage": 1, "images_per_sec": 80.0, "cpu_seconds": 1.0}]  # a resumed run starts over
  log.write_text("".join(json.dumps(r) + "\n" for r in rows))
  cores = ablate.usable_cores()
  wall = ablate.training_windows(log, 16, "wall")
  cpu = ablate.training_windows(log, 16, "cpu")
  assert [(w["steps"], w["stage"]) for w in wall] == [(10, 1), (10, 2)]
  assert [w["seconds"] for w in wall] == pytest.approx([4.0, 8.0])
  assert [w["seconds"] for w in cpu] == pytest.approx([6.0 / cores, 12.0 / cores])
  assert [w["wall_seconds"] for w in cpu] == pytest.approx([4.0, 8.0])
  log.write_text(json.dumps({"step": 10, "stage": 1, "images_per_sec": 40.0}) + "\n")
  assert ablate.training_windows(log, 16)[0]["seconds"] == pytest.approx(4.0)
  with pytest.raises(UserError, match="no CPU time"):
    ablate.training_windows(log, 16, "cpu")


def test_ablation_replicas_get_one_plan_from_their_pooled_first_rounds(tmp_path, capsys):
  """The replicas of a variant (--seeds) compute the same thing: after the first round they are planned
  once, from their first rounds' steps and seconds pooled, so they differ by seed and not by steps."""
  from faceinpaint_jax import ablate
  from faceinpaint_jax.config import load_config_file
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  config.train.steps, config.train.stage1_steps = 100, 80
  replicas = []
  # The first window (compilation) is left out; after it, 20 stage-1 steps in 2 s and in 3 s.
  for seed, seconds in ((0, 2.0), (1, 3.0)):
    workdir = tmp_path / f"seed{seed}"
    workdir.mkdir()
    rows = [{"step": 5, "stage": 1, "images_per_sec": 1.0},
            {"step": 25, "stage": 1, "images_per_sec": 20 * config.train.batch_size / seconds}]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entry = {"seconds": {"stage1": 0.1, "stage2": 0.3}, "plan": {"train.steps": 100}, "rounds": [{"steps_to": 25}]}
    replicas.append((f"full[train.seed={seed}]", entry, workdir))
  ablate._replan(replicas, config, 60.0, "wall")
  (_, first, _), (_, second, _) = replicas
  pooled = 5.0 / 40  # s per stage-1 iteration over both replicas
  assert first["seconds"] == second["seconds"] == pytest.approx({"stage1": pooled, "stage2": 3 * pooled})
  assert first["plan"] == second["plan"] == ablate.plan_steps(config, first["seconds"], 60.0)
  assert first["initial_plan"] == {"train.steps": 100} and first["pilot_seconds"] == {"stage1": 0.1, "stage2": 0.3}
  before = dict(first["plan"])
  ablate._replan(replicas[:1], config, 600.0, "wall")  # once only: a resumed run keeps its plan
  assert first["plan"] == before
