"""Rotation representations: axis-angle, rotation matrix, quaternion and 6D.

Every function broadcasts over leading axes (`*B`). Conventions:

* axis-angle `aa`: rotation vector, angle in radians = its norm (right-handed).
* rotation matrix `rotmat`: acts on column vectors, `x' = R @ x`.
* quaternion `quat`: (w, x, y, z), scalar first, unit norm (SPIN / torchgeometry order).
* 6D `rot6d`: the first two columns of R written row-major as a (3, 2) matrix, i.e.
  `(R00, R01, R10, R11, R20, R21)`; SPIN's `rot6d_to_rotmat` convention (Zhou et al. CVPR 2019).

Gradients are exact and finite at the zero rotation: the small-angle branches use Taylor series
behind a "double where" so that no NaN leaks into the unused branch. `rotmat_to_aa` goes through
a quaternion (Shepperd's method) and `atan2`, which stays accurate near angle 0 and near pi.
"""

import jax.numpy as jnp
from jaxtyping import Float

from smpl_jax.typing import Array

# Below this squared angle (rad^2) the Taylor branches are used; their truncation error there is
# below 1e-16, far under float32 resolution.
_SMALL_ANGLE_SQ = 1e-6


def _sinc_and_half_versine(theta_sq):
  """Returns (sin(t)/t, (1 - cos t)/t^2) for t = sqrt(theta_sq), stable and smooth at t = 0."""
  small = theta_sq < _SMALL_ANGLE_SQ
  safe_sq = jnp.where(small, 1.0, theta_sq)
  theta = jnp.sqrt(safe_sq)
  sinc = jnp.where(small, 1.0 - theta_sq / 6.0 + theta_sq**2 / 120.0, jnp.sin(theta) / theta)
  # (1 - cos t) / t^2 = 2 sin^2(t/2) / t^2: written without the cancellation in 1 - cos t.
  half = jnp.sin(0.5 * theta) / theta
  versine = jnp.where(small, 0.5 - theta_sq / 24.0 + theta_sq**2 / 720.0, 2.0 * half * half)
  return sinc, versine


def skew(v: Float[Array, "*B 3"]) -> Float[Array, "*B 3 3"]:
  """Cross-product matrix: skew(v) @ x == cross(v, x)."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = jnp.zeros_like(x)
  return jnp.stack(
    [jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)],
    -2,
  )


def aa_to_rotmat(aa: Float[Array, "*B 3"]) -> Float[Array, "*B 3 3"]:
  """Rodrigues' formula, R = I + sinc(t) [r]x + ((1 - cos t)/t^2) [r]x^2, with t = |r|."""
  theta_sq = jnp.sum(aa * aa, axis=-1)
  sinc, versine = _sinc_and_half_versine(theta_sq)
  k = skew(aa)
  eye = jnp.eye(3, dtype=aa.dtype)
  return (
    eye
    + sinc[..., None, None] * k
    + versine[..., None, None] * jnp.matmul(k, k, precision="highest")
  )


def aa_to_quat(aa: Float[Array, "*B 3"]) -> Float[Array, "*B 4"]:
  """Axis-angle to unit quaternion (w, x, y, z)."""
  theta_sq = jnp.sum(aa * aa, axis=-1)
  small = theta_sq < _SMALL_ANGLE_SQ
  safe_sq = jnp.where(small, 1.0, theta_sq)
  theta = jnp.sqrt(safe_sq)
  # sin(t/2)/t, Taylor: 1/2 - t^2/48.
  scale = jnp.where(small, 0.5 - theta_sq / 48.0, jnp.sin(0.5 * theta) / theta)
  w = jnp.where(small, 1.0 - theta_sq / 8.0, jnp.cos(0.5 * theta))
  return jnp.concatenate([w[..., None], scale[..., None] * aa], axis=-1)


def quat_to_aa(quat: Float[Array, "*B 4"]) -> Float[Array, "*B 3"]:
  """Unit quaternion (w, x, y, z) to axis-angle with angle in [0, pi]."""
  quat = quat * jnp.where(quat[..., :1] < 0, -1.0, 1.0)  # q and -q are the same rotation
  w, v = quat[..., 0], quat[..., 1:]
  s_sq = jnp.sum(v * v, axis=-1)
  small = s_sq < _SMALL_ANGLE_SQ
  safe_sq = jnp.where(small, 1.0, s_sq)
  s = jnp.sqrt(safe_sq)
  # angle = 2 atan2(s, w); scale = angle / s, Taylor around s = 0 (w ~ 1): 2/w - 2 s^2 / (3 w^3).
  safe_w = jnp.where(small, w, 1.0)
  taylor = 2.0 / safe_w - 2.0 * s_sq / (3.0 * safe_w**3)
  scale = jnp.where(small, taylor, 2.0 * jnp.arctan2(s, w) / s)
  return scale[..., None] * v


def quat_to_rotmat(quat: Float[Array, "*B 4"]) -> Float[Array, "*B 3 3"]:
  """Quaternion (w, x, y, z) to rotation matrix; the quaternion is normalised first."""
  quat = quat / jnp.linalg.norm(quat, axis=-1, keepdims=True)
  w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
  rows = [
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ]
  return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def rotmat_to_quat(rotmat: Float[Array, "*B 3 3"]) -> Float[Array, "*B 4"]:
  """Rotation matrix to unit quaternion (w >= 0), Shepperd's method.

  Four candidate formulas are computed, each well-conditioned where its pivot (the largest of
  w^2, x^2, y^2, z^2) is large; the best-conditioned one is selected per element, so the result
  is accurate everywhere, including angles near pi.
  """
  r = rotmat
  m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
  trace = m00 + m11 + m22
  pivots = jnp.stack([trace, m00, m11, m22], -1)  # proportional to 4 w^2 - 1, 4 x^2 - 1, ...
  cands = jnp.stack(
    [
      jnp.stack(
        [
          1 + trace,
          r[..., 2, 1] - r[..., 1, 2],
          r[..., 0, 2] - r[..., 2, 0],
          r[..., 1, 0] - r[..., 0, 1],
        ],
        -1,
      ),
      jnp.stack(
        [
          r[..., 2, 1] - r[..., 1, 2],
          1 + m00 - m11 - m22,
          r[..., 0, 1] + r[..., 1, 0],
          r[..., 0, 2] + r[..., 2, 0],
        ],
        -1,
      ),
      jnp.stack(
        [
          r[..., 0, 2] - r[..., 2, 0],
          r[..., 0, 1] + r[..., 1, 0],
          1 - m00 + m11 - m22,
          r[..., 1, 2] + r[..., 2, 1],
        ],
        -1,
      ),
      jnp.stack(
        [
          r[..., 1, 0] - r[..., 0, 1],
          r[..., 0, 2] + r[..., 2, 0],
          r[..., 1, 2] + r[..., 2, 1],
          1 - m00 - m11 + m22,
        ],
        -1,
      ),
    ],
    -2,
  )  # (*B, 4 candidates, 4 components), each = 4 q_pivot * q
  best = jnp.argmax(pivots, axis=-1)
  q = jnp.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  return q * jnp.where(q[..., :1] < 0, -1.0, 1.0)


def rotmat_to_aa(rotmat: Float[Array, "*B 3 3"]) -> Float[Array, "*B 3"]:
  """Rotation matrix to axis-angle (angle in [0, pi]); finite at the identity, accurate near pi.

  Replaces torchgeometry's `rotation_matrix_to_angle_axis`, which SPIN calls and which returns NaN
  at the identity (SPIN_SPEC 12.7).
  """
  return quat_to_aa(rotmat_to_quat(rotmat))


def rot6d_to_rotmat(rot6d: Float[Array, "*B 6"]) -> Float[Array, "*B 3 3"]:
  """SPIN's 6D representation to a rotation matrix by Gram-Schmidt.

  The 6 numbers are a (3, 2) matrix written row-major; its columns a1, a2 give
  b1 = a1/|a1|, b2 = normalise(a2 - (b1.a2) b1), b3 = b1 x b2, and R = [b1 b2 b3] (columns).
  """
  m = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
  a1, a2 = m[..., 0], m[..., 1]
  # Like torch's F.normalize (eps 1e-12): a degenerate input gives a finite (if arbitrary) matrix.
  b1 = a1 / jnp.maximum(jnp.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
  a2 = a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1
  b2 = a2 / jnp.maximum(jnp.linalg.norm(a2, axis=-1, keepdims=True), 1e-12)
  b3 = jnp.cross(b1, b2)
  return jnp.stack([b1, b2, b3], axis=-1)


def rotmat_to_rot6d(rotmat: Float[Array, "*B 3 3"]) -> Float[Array, "*B 6"]:
  """Inverse of `rot6d_to_rotmat` on rotation matrices: the first two columns, row-major."""
  return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def aa_to_rot6d(aa: Float[Array, "*B 3"]) -> Float[Array, "*B 6"]:
  return rotmat_to_rot6d(aa_to_rotmat(aa))


def rot6d_to_aa(rot6d: Float[Array, "*B 6"]) -> Float[Array, "*B 3"]:
  return rotmat_to_aa(rot6d_to_rotmat(rot6d))


def geodesic_angle(r1: Float[Array, "*B 3 3"], r2: Float[Array, "*B 3 3"]) -> Float[Array, "*B"]:
  """Angle in radians of r1^T r2: 2 atan2(|q_xyz|, |q_w|), accurate near 0 and pi, with a finite
  (zero) gradient at r1 == r2."""
  q = rotmat_to_quat(jnp.matmul(jnp.swapaxes(r1, -1, -2), r2, precision="highest"))
  s_sq = jnp.sum(q[..., 1:] ** 2, axis=-1)
  positive = s_sq > 0
  s = jnp.where(positive, jnp.sqrt(jnp.where(positive, s_sq, 1.0)), 0.0)
  return 2.0 * jnp.arctan2(s, jnp.abs(q[..., 0]))


__all__ = [
  "aa_to_quat",
  "aa_to_rot6d",
  "aa_to_rotmat",
  "geodesic_angle",
  "quat_to_aa",
  "quat_to_rotmat",
  "rot6d_to_aa",
  "rot6d_to_rotmat",
  "rotmat_to_aa",
  "rotmat_to_quat",
  "rotmat_to_rot6d",
  "skew",
]
