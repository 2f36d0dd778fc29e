"""Mask-free completion: the attentive module's last map A_N turned into a hole mask that covers the damage.

A_N is soft at the hole's border and rounds its corners (the module runs on a pooled image and its maps
are resized back), so a plain threshold stops a pixel or two short of the border and leaves a rim of
damage behind; stray responses (a white collar, a highlight) give small blobs. `blind_mask` refines the
map with a guided filter on the damaged image (the map's edges move onto the damage's edges), thresholds,
closes small gaps, optionally grows the mask, and drops connected components smaller than a minimum area;
`blind_mask_at_model_size` (and `inpaint`, at the photo's resolution) then grows a found region of flat
colour or of per-pixel noise over the rest of that fill (`grow_into_fill`).
Sizes are in pixels at the model's resolution. The defaults were measured with `evaluate --blind` over a
grid of settings (docs/REAL_PHOTOS.md): on white holes the guided filter takes the part of the hole left
uncovered from 1.7 % to 0.1 % while raising IoU (0.973 → 0.982), where a 1-px dilation would cover it
at an IoU of 0.87.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class BlindMaskSettings:
  # A_N refined by a guided filter (He et al. 2010) with the damaged image as guide before the threshold:
  # the map's edges move onto the damage's own edges (A_N comes from a pooled image and has rounded
  # corners). Radius in px at the model's size (0 = off) and the filter's ε (in [0, 1]² colour units).
  guided_radius: int = 4
  guided_eps: float = 1e-3
  threshold: float = 0.4
  closing: int = 1  # radius of the closing (px at the model's size); 0 = none
  dilation: int = 0  # radius the mask grows by afterwards; 0 = none
  min_area: float = 0.004  # components smaller than this fraction of the image are dropped
  # A found region with a flat-colour core (a white or solid fill, even where the region also spreads
  # onto the face beside it) grows from that core into the connected pixels of its colour, up to
  # FLAT_GROWTH model pixels (grow_into_flat_fill): in inpaint at the photo's resolution, in
  # evaluate --blind at the model's.
  grow_flat: bool = True
  # Likewise a found region of per-pixel noise grows into the connected noisy pixels next to it
  # (grow_into_noise_fill): the corners a rounded A_N misses, where every pixel left is an outlier.
  grow_noise: bool = True


FLAT_GROWTH = 3  # px at the model's size; flat and noise fills grow by the same reach


def _disk(radius: int) -> np.ndarray:
  y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  return x * x + y * y <= radius * radius + radius  # a rounder disk than the strict circle at small radii


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
  """He, Sun & Tang's guided filter with a colour guide (H, W, 3) in [0, 1]: `source` (H, W) smoothed
  except across the guide's edges, where it follows them."""
  guide = np.asarray(guide, np.float64)
  source = np.asarray(source, np.float64)
  box = lambda x: ndimage.uniform_filter(x, size=2 * radius + 1, mode="reflect")
  mean_i = np.stack([box(guide[..., c]) for c in range(3)], axis=-1)
  mean_p = box(source)
  cov_ip = np.stack([box(guide[..., c] * source) for c in range(3)], axis=-1) - mean_i * mean_p[..., None]
  var = np.empty(guide.shape[:2] + (3, 3))
  for i in range(3):
    for j in range(i, 3):
      var[..., i, j] = var[..., j, i] = box(guide[..., i] * guide[..., j]) - mean_i[..., i] * mean_i[..., j]
  a = np.linalg.solve(var + eps * np.eye(3), cov_ip[..., None])[..., 0]
  b = mean_p - (a * mean_i).sum(axis=-1)
  return (np.stack([box(a[..., c]) for c in range(3)], axis=-1) * guide).sum(axis=-1) + box(b)


def blind_mask(attention: np.ndarray, settings: BlindMaskSettings = BlindMaskSettings(),
               guide: np.ndarray | None = None) -> np.ndarray:
  """(H, W) or (H, W, 1) attention map in [0, 1] → (H, W) bool hole mask. `guide`: the damaged image
  (H, W, 3) in [0, 1], needed when settings.guided_radius > 0."""
  attention = np.asarray(attention, np.float32)
  if attention.ndim == 3:
    attention = attention[..., 0]
  if settings.guided_radius > 0:
    if guide is None:
      raise ValueError("the guided refinement needs the damaged image as guide")
    attention = guided_filter(guide, attention, settings.guided_radius, settings.guided_eps)
  mask = attention > settings.threshold
  if settings.closing > 0:
    # Pad so that closing does not erode the mask where it touches the image border.
    r = settings.closing
    mask = ndimage.binary_closing(np.pad(mask, r, mode="edge"), structure=_disk(r))[r:-r, r:-r]
  if settings.dilation > 0:
    mask = ndimage.binary_dilation(mask, structure=_disk(settings.dilation))
  if settings.min_area > 0 and mask.any():
    labels, count = ndimage.label(mask)
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], areas >= settings.min_area * mask.size])
    mask = keep[labels]
  return mask


def blind_mask_at_model_size(attention: np.ndarray, guide: np.ndarray,
                             settings: BlindMaskSettings = BlindMaskSettings()) -> np.ndarray:
  """What mask-free `inpaint` makes of A_N, at the model's size (evaluate --blind): `blind_mask`, then
  a found flat-colour region grown over the rest of its fill (settings.grow_flat). `guide`: the damaged
  image (H, W, 3) in [0, 1]."""
  mask = blind_mask(attention, settings, guide)
  return grow_into_fill(mask, np.asarray(guide, np.float64) * 255.0, FLAT_GROWTH, settings)


def grow_into_fill(mask: np.ndarray, photo: np.ndarray, max_growth: int,
                   settings: BlindMaskSettings = BlindMaskSettings()) -> np.ndarray:
  """The growth steps `settings` turns on (flat-colour, then noise regions), `photo` in 0–255 levels:
  the one place mask-free `inpaint` and `evaluate --blind` both take them from."""
  if settings.grow_flat:
    mask = grow_into_flat_fill(mask, photo, max_growth)
  if settings.grow_noise:
    mask = grow_into_noise_fill(mask, photo, max_growth)
  return mask


def refine_on_photo(mask: np.ndarray, photo: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
  """A blind mask found at the model's size and warped onto a photo (H, W) in [0, 1] → (H, W) bool, its
  edges moved onto the photo's own by a guided filter of `radius` photo pixels (about two of the model's
  pixels): at the photo's resolution one model pixel is many, and a rim that small at 64² would leave a
  band of damage around the fill."""
  mask = np.asarray(mask, np.float64)
  found = mask > 0.01
  if not found.any():
    return np.zeros(mask.shape, bool)
  ys, xs = np.nonzero(found)
  pad = 3 * radius
  top, left = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
  bottom, right = min(ys.max() + pad + 1, mask.shape[0]), min(xs.max() + pad + 1, mask.shape[1])
  window = guided_filter(np.asarray(photo[top:bottom, left:right], np.float64) / 255.0,
                         mask[top:bottom, left:right], radius, eps)
  refined = np.zeros(mask.shape, bool)
  refined[top:bottom, left:right] = window > 0.5
  return refined


def _grow_regions(mask: np.ndarray, max_growth: int, candidates) -> np.ndarray:
  """Each connected region of `mask` for which `candidates(box, component)` gives (seed, similar), two
  box-shaped maps (the part of the region to grow from, and the pixels like it), extended from its seed
  into the connected pixels of `similar` up to `max_growth` px beyond the seed (diagonals counted as one
  step, so a rounded corner is reached as deep as an edge); regions it gives None for
  are left as found."""
  if not mask.any() or max_growth <= 0:
    return mask
  labels, _ = ndimage.label(mask)
  grown = mask.copy()
  for k, region in enumerate(ndimage.find_objects(labels), start=1):
    pad = max_growth + 1
    box = tuple(slice(max(r.start - pad, 0), r.stop + pad) for r in region)
    component = labels[box] == k
    found = candidates(box, component)
    if found is None:
      continue
    seed, similar = found
    reach = ndimage.binary_dilation(seed, structure=np.ones((3, 3), bool), iterations=max_growth)
    near, _ = ndimage.label(seed | (similar & reach))
    keep = np.unique(near[seed])
    grown[box] |= np.isin(near, keep[keep > 0])
  return grown


def grow_into_flat_fill(mask: np.ndarray, photo: np.ndarray, max_growth: int, spread: float = 8.0,
                        tolerance: float = 24.0, min_share: float = 0.1) -> np.ndarray:
  """Each found region whose flat core (its pixels within `spread` levels of its commonest colour) is one
  flat colour (white, a solid fill: the core's own spread below a quarter of `spread`), at least
  `min_share` of the region and at least `max_growth`² px, extended from that core into the connected
  pixels of its colour (within `tolerance` levels), at most `max_growth` pixels beyond it: the corners and
  edges a soft detection misses. The core, not the whole region, because a detection that also spreads
  onto the face beside a hole is not flat as a whole and would leave the hole's corners behind. Textured
  regions (noise, pasted content, a false detection on skin or background) and specks are left as found."""
  pixels = np.asarray(photo, np.float64)

  def candidates(box, component):
    inside = pixels[box][component]
    levels, counts = np.unique(np.round(inside / 4.0), axis=0, return_counts=True)
    commonest = levels[counts.argmax()] * 4.0
    core = component & (np.abs(pixels[box] - commonest).max(axis=-1) <= spread)
    area = int(core.sum())
    if area < max(min_share * component.sum(), max_growth ** 2):
      return None
    center = np.median(pixels[box][core], axis=0)
    if np.median(np.abs(pixels[box][core] - center)) * 1.4826 > spread / 4.0:
      return None
    return core, np.abs(pixels[box] - center).max(axis=-1) <= tolerance

  return _grow_regions(mask, max_growth, candidates)


def isolation(photo: np.ndarray) -> np.ndarray:
  """(H, W, 3) levels → (H, W): each pixel's distance (largest channel difference) to the most similar
  of its 8 neighbours. A face is smooth, and along an edge some neighbour continues it, so a face's
  pixels are within a few levels of one; per-pixel uniform noise is about 55 levels from all of them,
  and a face pixel next to noise still has its face neighbours (a 3×3 median would not: it is pulled
  by the noise beside it)."""
  pixels = np.asarray(photo, np.float64)
  height, width = pixels.shape[:2]
  padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="edge")
  distances = [np.abs(pixels - padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]).max(axis=-1)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
  return np.min(distances, axis=0)


def grow_into_noise_fill(mask: np.ndarray, photo: np.ndarray, max_growth: int, level: float = 32.0,
                         tolerance: float = 16.0) -> np.ndarray:
  """Each found region that is per-pixel noise (its pixels' median `isolation` above `level` levels)
  extended into the connected pixels more isolated than `tolerance`, at most `max_growth` pixels beyond
  it, and the pinholes this leaves (noise pixels that happen to lie close to a neighbour, at most
  max_growth² px each) closed. Flat fills, faces and pasted content are left as found."""
  apart = isolation(photo)

  def candidates(box, component):
    if np.median(apart[box][component]) <= level:
      return None
    return component, apart[box] > tolerance

  grown = _grow_regions(mask, max_growth, candidates)
  if grown is mask or not (grown & ~mask).any():
    return grown
  pinholes, count = ndimage.label(ndimage.binary_fill_holes(grown) & ~grown)
  if count:
    areas = ndimage.sum_labels(np.ones_like(grown), pinholes, index=np.arange(1, count + 1))
    grown = grown | np.concatenate([[False], areas <= max_growth ** 2])[pinholes]
  return grown
