"""Blind masks from A_N: covering the hole's soft rim, closing, dropping stray blobs, and the guided filter
that moves a pooled map's edges onto the damage's own."""

import dataclasses

import numpy as np

from faceinpaint_jax.blind import BlindMaskSettings, blind_mask, guided_filter


def _soft_square(size=64, top=16, side=32, pool=4):
  """A hole's map as the attentive module gives it: a square seen at 1/pool resolution, resized back."""
  from PIL import Image
  hole = np.zeros((size, size), np.float32)
  hole[top:top + side, top:top + side] = 1
  small = hole.reshape(size // pool, pool, size // pool, pool).mean(axis=(1, 3))
  return hole > 0.5, np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def test_dilation_covers_the_rim_a_plain_threshold_leaves():
  hole, soft = _soft_square(top=18)  # not on the pooled grid: the map's edges are soft
  plain = blind_mask(soft, BlindMaskSettings(0, threshold=0.5, closing=0, dilation=0, min_area=0))
  assert (hole & ~plain).sum() > 0  # the rim a threshold leaves behind
  grown = blind_mask(soft, BlindMaskSettings(0, threshold=0.5, closing=0, dilation=2, min_area=0))
  assert not (hole & ~grown).any()


def test_small_components_are_dropped_and_gaps_closed():
  attention = np.zeros((64, 64), np.float32)
  attention[10:40, 10:40] = 1
  attention[24, 10:40] = 0  # a one-pixel gap across the hole
  attention[55:57, 55:57] = 1  # a stray blob: 4 px < 0.4 % of 4,096
  mask = blind_mask(attention, BlindMaskSettings(0, threshold=0.5, closing=1, dilation=0, min_area=0.004))
  assert mask[24, 20] and not mask[55:57, 55:57].any()
  assert mask.sum() == 30 * 30


def test_guided_filter_snaps_a_rounded_map_onto_the_damage_edges():
  from scipy import ndimage
  hole, _ = _soft_square(top=18)
  soft = ndimage.gaussian_filter(hole.astype(np.float64), 3.0) * 0.8  # a shrunk blob, corners rounded
  rng = np.random.default_rng(0)
  image = np.clip(0.5 + 0.1 * rng.standard_normal((64, 64, 3)), 0, 1)
  image[hole] = [0.45, 0.35, 0.3]  # a flat fill close to skin colour
  iou = lambda m: (m & hole).sum() / (m | hole).sum()
  plain = blind_mask(soft, BlindMaskSettings(0, threshold=0.5, closing=0, dilation=0, min_area=0))
  guided = blind_mask(soft, BlindMaskSettings(guided_radius=3, guided_eps=1e-3, threshold=0.5, closing=0,
                                              dilation=0, min_area=0), image)
  assert iou(guided) > iou(plain) + 0.05 and iou(guided) > 0.9, (iou(plain), iou(guided))  # 0.86 → 0.93
  # On a flat guide the filter is a plain box blur of the map, and it keeps constants.
  flat = np.full((32, 32, 3), 0.5)
  np.testing.assert_allclose(guided_filter(flat, np.full((32, 32), 0.7), 2, 1e-2), 0.7, atol=1e-9)


def test_on_a_photo_the_found_region_snaps_to_the_damage_and_a_flat_fill_is_taken_whole():
  from scipy import ndimage

  from faceinpaint_jax.blind import grow_into_flat_fill, refine_on_photo
  rng = np.random.default_rng(0)
  photo = np.clip(120 + 25 * rng.standard_normal((300, 300, 3)), 0, 255).astype(np.uint8)
  hole = np.zeros((300, 300), bool)
  hole[100:180, 90:200] = True
  photo[hole] = 255
  # What comes back from a 64² crop: a blurred, shrunk, corner-less map at the photo's resolution.
  soft = ndimage.gaussian_filter(hole.astype(float), 8) * 0.9
  plain = soft > 0.5
  refined = refine_on_photo(soft, photo, radius=9)
  assert (hole & ~refined).sum() < 0.2 * (hole & ~plain).sum()
  grown = grow_into_flat_fill(refined, photo, max_growth=15)
  assert not (hole & ~grown).any() and (grown & ~hole).sum() < 0.01 * hole.sum()
  # Textured damage does not grow: noise stays as found.
  noisy = photo.copy()
  noisy[hole] = rng.integers(0, 255, (hole.sum(), 3))
  np.testing.assert_array_equal(grow_into_flat_fill(plain, noisy, max_growth=15), plain)



def test_a_detection_that_spreads_onto_the_face_still_takes_the_white_fill_whole_and_specks_stay():
  """Mask-free on a real photo: the found region covers most of a white hole but also spreads onto the
  skin beside it (not flat as a whole), and leaves one corner of the hole white; the corner is taken from
  the region's flat core. A speck found on smooth skin is not grown into the skin around it."""
  from scipy import ndimage

  from faceinpaint_jax.blind import grow_into_flat_fill
  rng = np.random.default_rng(3)
  # Textured like skin in a photo: 8 levels per channel (a cheek in the portraits: 11–17).
  skin = np.clip(ndimage.gaussian_filter(170 + 45 * rng.standard_normal((200, 200, 3)), (1.5, 1.5, 0)), 0, 255)
  photo = skin.round()
  hole = np.zeros((200, 200), bool)
  hole[60:120, 60:120] = True
  photo[hole] = 255
  found = hole.copy()
  found[60:75, 105:120] = False  # a rounded corner missed
  found[40:170, 10:170] |= ~hole[40:170, 10:170]  # spread onto the skin all round the hole
  assert (found & ~hole).sum() > 4 * (found & hole).sum()  # as on real photos: the hole 10–20 % of it
  grown = grow_into_flat_fill(found, photo, max_growth=20)
  assert not (hole & ~grown).any()
  assert (grown & ~found & ~hole).sum() == 0  # nothing beyond the hole added
  speck = np.zeros((200, 200), bool)
  speck[180:182, 30:32] = True
  np.testing.assert_array_equal(grow_into_flat_fill(speck, photo, max_growth=20), speck)


def test_a_rounded_corner_as_deep_as_the_reach_is_taken_whole():
  """The growth reaches `max_growth` px in every direction, diagonals included: a corner rounded off
  by 3 px along both edges (the held-out face where one white pixel was left) is covered at reach 3."""
  from faceinpaint_jax.blind import grow_into_flat_fill
  rng = np.random.default_rng(4)
  photo = rng.integers(60, 200, (40, 40, 3)).astype(np.float64)
  hole = np.zeros((40, 40), bool)
  hole[10:30, 10:30] = True
  photo[hole] = 255
  rows, cols = np.mgrid[:40, :40]
  found = hole & ((rows - 10) + (cols - 10) >= 5)  # the corner's 15 px missed
  grown = grow_into_flat_fill(found, photo, max_growth=3)
  assert not (hole & ~grown).any() and not (grown & ~hole).any()

def test_at_the_model_size_a_found_flat_fill_is_taken_whole_as_inpaint_does():
  """evaluate --blind scores the mask mask-free inpaint would use: a soft, corner-less A_N over a
  mean-colour fill leaves the fill's corners uncovered until the found region grows over the fill."""
  from scipy import ndimage

  from faceinpaint_jax.blind import blind_mask_at_model_size
  rng = np.random.default_rng(1)
  damaged = np.clip(0.5 + 0.12 * rng.standard_normal((64, 64, 3)), 0, 1)
  hole = np.zeros((64, 64), bool)
  hole[16:48, 18:46] = True
  damaged[hole] = damaged[~hole].mean(axis=0)
  attention = ndimage.gaussian_filter(hole.astype(float), 3) * 0.8  # a 4x-pooled module's rounded map
  settings = BlindMaskSettings(guided_radius=0)
  found = blind_mask_at_model_size(attention, damaged, settings)
  plain = blind_mask_at_model_size(attention, damaged, dataclasses.replace(settings, grow_flat=False))
  assert (hole & ~plain).sum() >= 30  # the corners
  assert (hole & ~found).sum() == 0 and (found & ~hole).sum() < 0.05 * hole.sum()
  noisy = damaged.copy()
  noisy[hole] = rng.uniform(0, 1, (hole.sum(), 3))
  np.testing.assert_array_equal(
      blind_mask_at_model_size(attention, noisy, dataclasses.replace(settings, grow_noise=False)), plain)


def test_at_the_model_size_a_found_noise_fill_is_taken_whole_and_a_face_is_not_grown_into():
  """A rounded A_N over a per-pixel noise fill leaves the fill's corners, every pixel of them an outlier
  that costs hole PSNR; the found region grows over them, but not into the smooth face around it."""
  from scipy import ndimage

  from faceinpaint_jax.blind import blind_mask_at_model_size, isolation
  rng = np.random.default_rng(2)
  # A smooth stand-in for a face at 64² (a face pixel is a few levels from its nearest neighbour).
  face = np.clip(0.5 + ndimage.gaussian_filter(rng.standard_normal((64, 64, 3)), (3, 3, 0)), 0, 1)
  assert np.percentile(isolation(face * 255), 99) < 16  # held-out sample faces at 64²: 22
  hole = np.zeros((64, 64), bool)
  hole[16:48, 18:46] = True
  noisy = face.copy()
  noisy[hole] = rng.uniform(0, 1, (hole.sum(), 3))
  attention = ndimage.gaussian_filter(hole.astype(float), 3) * 0.8
  settings = BlindMaskSettings(guided_radius=0)
  plain = blind_mask_at_model_size(attention, noisy, dataclasses.replace(settings, grow_noise=False))
  found = blind_mask_at_model_size(attention, noisy, settings)
  assert (hole & ~plain).sum() >= 30
  assert (hole & ~found).sum() <= 2 and (found & ~hole).sum() <= 2  # of 896 px
  # The same map over a white fill, or over no damage at all, is left to the other steps.
  white = face.copy()
  white[hole] = 1.0
  np.testing.assert_array_equal(
      blind_mask_at_model_size(attention, white, dataclasses.replace(settings, grow_flat=False)),
      blind_mask_at_model_size(attention, white, dataclasses.replace(settings, grow_flat=False,
                                                                      grow_noise=False)))
  np.testing.assert_array_equal(blind_mask_at_model_size(attention, face, settings),
                                blind_mask_at_model_size(attention, face, dataclasses.replace(
                                    settings, grow_noise=False)))
