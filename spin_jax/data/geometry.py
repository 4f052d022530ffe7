"""Crops and SPIN's augmentation on the host, in numpy, Pillow and OpenCV (SPIN_SPEC 7.3).

Pixel coordinates are continuous: pixel (u, v) covers [u, u + 1) x [v, v + 1). SPIN's
annotation files give pixel indices (the centre of pixel (0, 0) is (0, 0)); `INDEX_TO_CONTINUOUS`
converts. Every image warp and every keypoint transform here goes through one 2x3 affine, so an
image and its labels cannot disagree.

Rotations follow SPIN: an augmentation angle `rot` (degrees) turns the image content
counter-clockwise on screen; in the camera frame (x right, y down, z forward) that is a rotation
about z by -rot, applied to 2D keypoints, 3D joints and the global orientation alike. A flip
mirrors x about the crop centre, swaps left and right (`SPIN49_FLIP_PERM`, `J24_FLIP_PERM`) and
mirrors the pose (`flip_pose`). These numpy versions run in the input pipeline's workers; the
JAX versions in `smpl_jax.augment` serve the fits dictionary on device, and a test checks they
agree.
"""

import dataclasses

import cv2
import numpy as np
from PIL import Image

from smpl_jax.joints import J24_FLIP_PERM, SMPL_JOINTS_FLIP_PERM, SPIN49_FLIP_PERM

INDEX_TO_CONTINUOUS = 0.5
cv2.setNumThreads(1)  # one crop is too small to split; the pipeline's threads share the cores


# -- affines ------------------------------------------------------------------------------------


def crop_affine(center, side: float, out_size: int, rot_deg: float = 0.0, flip: bool = False):
  """2x3 affine from source pixels to output pixels: the square of side `side` centred at
  `center`, turned by `rot_deg` (content counter-clockwise), fills an `out_size` crop, then
  mirrored horizontally if `flip`."""
  a = np.deg2rad(-rot_deg)
  c, s = np.cos(a), np.sin(a)
  k = out_size / side
  lin = k * np.array([[c, -s], [s, c]])
  if flip:
    lin = np.diag([-1.0, 1.0]) @ lin
  mid = np.full(2, out_size / 2.0)
  t = mid - lin @ np.asarray(center, np.float64)
  return np.concatenate([lin, t[:, None]], axis=1)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
  """(..., 2) points through a 2x3 affine."""
  return points @ affine[:, :2].T + affine[:, 2]


def warp(image, affine: np.ndarray, out_size: int, nearest: bool = False) -> np.ndarray:
  """(out_size, out_size[, C]) uint8 whose pixel centres come from the source (a Pillow image or
  an array) through the inverse of `affine`, bilinear (or nearest) interpolation; outside the
  source is black.

  OpenCV's warpAffine, about 10x faster than Pillow's transform (0.16 vs 1.7 ms for a 224 px
  crop; the input pipeline's largest cost) and equal to it within 1 level away from the border.
  OpenCV puts pixel centres at integers, this module at +0.5: the map is shifted to match."""
  lin_inv = np.linalg.inv(affine[:, :2])
  t_inv = -lin_inv @ affine[:, 2] + lin_inv @ np.full(2, 0.5) - 0.5
  inverse = np.concatenate([lin_inv, t_inv[:, None]], axis=1)
  flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
  return cv2.warpAffine(
    np.ascontiguousarray(np.asarray(image)),
    inverse,
    (out_size, out_size),
    flags=flags,
    borderMode=cv2.BORDER_CONSTANT,
    borderValue=0,
  )


def store_crop(image: Image.Image, center, scale: float, margin: float, size: int) -> Image.Image:
  """The stored crop of a source image: side `margin * 200 * scale` around `center`
  (continuous pixels) resized to `size` with antialiasing; black outside the image."""
  side = margin * 200.0 * float(scale)
  x0, y0 = np.asarray(center, np.float64) - side / 2.0
  ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
  ix1, iy1 = int(np.ceil(x0 + side)), int(np.ceil(y0 + side))
  # PIL's crop pads with black outside the image; resize's box keeps the sub-pixel offset.
  padded = image.crop((ix0, iy0, ix1, iy1))
  box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
  return padded.resize((size, size), Image.BILINEAR, box=box)


def store_keypoints(points: np.ndarray, center, scale: float, margin: float, size: int):
  """(..., 2) continuous source pixels -> stored-crop pixels (see `store_crop`)."""
  side = margin * 200.0 * float(scale)
  return (points - (np.asarray(center, np.float64) - side / 2.0)) * (size / side)


# -- SPIN's augmentation parameters -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
  """SPIN's training augmentation (SPIN_SPEC 7.1 / 7.3)."""

  flip_prob: float = 0.5
  noise_factor: float = 0.4  # per-channel multiplier ~ U[1 - f, 1 + f]
  rot_factor: float = 30.0  # degrees, rot = clip(N(0, 1) * f, -2f, 2f)
  rot_prob: float = 0.4  # SPIN sets rot to 0 with probability 0.6
  scale_factor: float = 0.25  # sc = clip(N(0, 1) * f + 1, 1 - f, 1 + f)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  flip: bool = False
  rot_deg: float = 0.0
  scale: float = 1.0
  channel_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)


def sample_augment(rng: np.random.Generator, opts: AugmentOptions) -> AugmentParams:
  flip = bool(rng.random() < opts.flip_prob)
  gain = rng.uniform(1.0 - opts.noise_factor, 1.0 + opts.noise_factor, 3)
  rot = float(np.clip(rng.normal() * opts.rot_factor, -2 * opts.rot_factor, 2 * opts.rot_factor))
  if rng.random() >= opts.rot_prob:
    rot = 0.0
  sc = float(
    np.clip(rng.normal() * opts.scale_factor + 1, 1 - opts.scale_factor, 1 + opts.scale_factor)
  )
  return AugmentParams(flip, rot, sc, tuple(float(g) for g in gain))


# -- labels -------------------------------------------------------------------------------------


def quat_from_aa(aa: np.ndarray) -> np.ndarray:
  angle = np.linalg.norm(aa, axis=-1, keepdims=True)
  half = 0.5 * angle
  # sin(half) / angle -> 1/2 as angle -> 0
  k = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-30), 0.5 - angle**2 / 48.0)
  return np.concatenate([np.cos(half), aa * k], axis=-1)


def aa_from_quat(q: np.ndarray) -> np.ndarray:
  q = q * np.where(q[..., :1] < 0, -1.0, 1.0)  # w >= 0: angle in [0, pi]
  v = q[..., 1:]
  n = np.linalg.norm(v, axis=-1, keepdims=True)
  angle = 2.0 * np.arctan2(n, q[..., :1])
  k = np.where(n > 1e-8, angle / np.maximum(n, 1e-30), 2.0 / np.maximum(q[..., :1], 1e-30))
  return v * k


def quat_mul(a, b):
  aw, ax, ay, az = np.moveaxis(a, -1, 0)
  bw, bx, by, bz = np.moveaxis(b, -1, 0)
  return np.stack(
    [
      aw * bw - ax * bx - ay * by - az * bz,
      aw * bx + ax * bw + ay * bz - az * by,
      aw * by - ax * bz + ay * bw + az * bx,
      aw * bz + ax * by - ay * bx + az * bw,
    ],
    axis=-1,
  )


def rotate_global_orient(global_orient: np.ndarray, rot_deg: float) -> np.ndarray:
  """R_z(-rot) R for an axis-angle global orientation (numpy twin of smpl_jax.augment)."""
  half = np.deg2rad(-rot_deg) / 2.0
  qz = np.array([np.cos(half), 0.0, 0.0, np.sin(half)])
  return aa_from_quat(quat_mul(qz, quat_from_aa(np.asarray(global_orient, np.float64))))


def flip_pose(pose: np.ndarray) -> np.ndarray:
  aa = np.asarray(pose).reshape(24, 3)[list(SMPL_JOINTS_FLIP_PERM)]
  return (aa * np.array([1.0, -1.0, -1.0])).reshape(72)


def augment_pose(pose: np.ndarray, aug: AugmentParams) -> np.ndarray:
  pose = np.asarray(pose, np.float64).copy()
  if aug.rot_deg:
    pose[:3] = rotate_global_orient(pose[:3], aug.rot_deg)
  if aug.flip:
    pose = flip_pose(pose)
  return pose.astype(np.float32)


def augment_joints3d(joints: np.ndarray, aug: AugmentParams) -> np.ndarray:
  """(24, 4) root-centred joints + validity: in-plane rotation, then flip."""
  out = np.asarray(joints, np.float64).copy()
  a = np.deg2rad(-aug.rot_deg)
  c, s = np.cos(a), np.sin(a)
  x, y = out[:, 0].copy(), out[:, 1].copy()
  out[:, 0], out[:, 1] = c * x - s * y, s * x + c * y
  if aug.flip:
    out = out[list(J24_FLIP_PERM)]
    out[:, 0] *= -1.0
  return out.astype(np.float32)


def augment_keypoints(keypoints: np.ndarray, affine: np.ndarray, flip: bool, out_size: int):
  """(49, 3) stored-crop keypoints -> SPIN's normalised [-1, 1] crop coordinates (x, y, conf);
  `affine` already contains the mirror, `flip` permutes left and right."""
  out = np.asarray(keypoints, np.float64).copy()
  out[:, :2] = 2.0 * apply_affine(affine, out[:, :2]) / out_size - 1.0
  if flip:
    out = out[list(SPIN49_FLIP_PERM)]
  return out.astype(np.float32)
