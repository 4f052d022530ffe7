"""Pinhole camera helpers in SPIN's conventions.

Frames and units: 3D points in metres in the camera frame after `cam_t` is added (x right, y
down, z forward, as in SPIN's `perspective_projection` with R = I); 2D points in pixels with the
principal point `center`. SPIN uses focal length 5000 px on a 224 px crop (SPIN_SPEC 1.4, 2).

All functions broadcast over leading axes `*B`.
"""

import jax.numpy as jnp
from jaxtyping import Float

from smpl_jax.typing import Array

# SPIN constants (SPIN `constants.py`): focal length in pixels and crop size.
FOCAL_LENGTH = 5000.0
IMG_RES = 224


def perspective_projection(
  points: Float[Array, "*B K 3"],
  cam_t: Float[Array, "*B 3"],
  focal_length: Float[Array, "*#B"] | float,
  center: Float[Array, "*#B 2"] | None = None,
  rotation: Float[Array, "*#B 3 3"] | None = None,
) -> Float[Array, "*B K 2"]:
  """x = f (R X + t)_xy / (R X + t)_z + c; `focal_length` may be a scalar or per element."""
  if rotation is not None:
    points = jnp.einsum("...ij,...kj->...ki", rotation, points, precision="highest")
  cam = points + cam_t[..., None, :]
  f = jnp.asarray(focal_length, points.dtype)[..., None, None]
  xy = f * cam[..., :2] / cam[..., 2:3]
  if center is not None:
    xy = xy + center[..., None, :]
  return xy


def weak_perspective_to_translation(
  cam_weak: Float[Array, "*B 3"],
  focal_length: float = FOCAL_LENGTH,
  img_res: float = IMG_RES,
) -> Float[Array, "*B 3"]:
  """HMR's weak-perspective camera [s, tx, ty] to a perspective translation (metres).

  HMR projects x_norm = s (X_xy + [tx, ty]) into [-1, 1]; the perspective camera that agrees with
  it at the body's depth has t = [tx, ty, 2 f / (img_res s)] (SPIN issue #55). The 1e-9 guards
  s = 0 as SPIN does.
  """
  s, tx, ty = cam_weak[..., 0], cam_weak[..., 1], cam_weak[..., 2]
  tz = 2.0 * focal_length / (img_res * s + 1e-9)
  return jnp.stack([tx, ty, tz], axis=-1)


def estimate_translation(
  joints: Float[Array, "*B K 3"],
  keypoints: Float[Array, "*B K 2"],
  confidence: Float[Array, "*B K"],
  focal_length: Float[Array, "*#B"] | float = FOCAL_LENGTH,
  center: Float[Array, "*#B 2"] | None = None,
) -> Float[Array, "*B 3"]:
  """Camera translation that best projects `joints` onto `keypoints` (SPIN's estimate_translation).

  Weighted linear least squares on the linearised pinhole equations, for each joint k with 3D
  (X, Y, Z), pixel (u, v), principal point (cx, cy):

      f tx + (cx - u) tz = (u - cx) Z - f X
      f ty + (cy - v) tz = (v - cy) Z - f Y

  with rows weighted by sqrt(confidence). Noise-free projections give the exact translation.
  SPIN calls this on the 24 ground-truth joints with f = 5000 and center = (112, 112), the
  default here when `center` is None. Where the weights cannot determine t (all confidences
  zero, or fewer than two distinct points), the result is NaN rather than an arbitrary number,
  so that callers can reject it with `jnp.isfinite`.
  """
  dtype = joints.dtype
  if center is None:
    center = jnp.full((2,), IMG_RES / 2.0, dtype)
  f = jnp.asarray(focal_length, dtype)[..., None]
  c = jnp.asarray(center, dtype)[..., None, :]
  w = jnp.sqrt(jnp.clip(confidence, 0.0, None))
  d = c - keypoints  # (cx - u, cy - v)
  zeros = jnp.zeros_like(d[..., 0])
  f_k = jnp.broadcast_to(f, d[..., 0].shape)
  # Rows for the x and y equations: [f, 0, cx - u] and [0, f, cy - v].
  ax = jnp.stack([f_k, zeros, d[..., 0]], -1)
  ay = jnp.stack([zeros, f_k, d[..., 1]], -1)
  bx = -d[..., 0] * joints[..., 2] - f * joints[..., 0]
  by = -d[..., 1] * joints[..., 2] - f * joints[..., 1]
  a = jnp.concatenate([ax, ay], -2) * jnp.concatenate([w, w], -1)[..., None]
  b = jnp.concatenate([bx, by], -1) * jnp.concatenate([w, w], -1)
  ata = jnp.einsum("...ki,...kj->...ij", a, a, precision="highest")
  atb = jnp.einsum("...ki,...k->...i", a, b, precision="highest")
  # Determinant relative to the scale of the normal matrix: a rank test that is unit-free.
  scale = jnp.trace(ata, axis1=-2, axis2=-1) / 3.0
  safe_scale = jnp.where(scale > 0, scale, 1.0)
  well_posed = (scale > 0) & (jnp.linalg.det(ata / safe_scale[..., None, None]) > 1e-10)
  eye = jnp.eye(3, dtype=dtype)
  safe_ata = jnp.where(well_posed[..., None, None], ata, eye)
  t = jnp.linalg.solve(safe_ata, atb[..., None])[..., 0]
  return jnp.where(well_posed[..., None], t, jnp.nan)
