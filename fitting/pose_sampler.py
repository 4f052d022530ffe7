"""A pose sampler with anatomical joint limits, in SMPL's joint order and frame.

Each of the 23 body joints gets a range per axis-angle component (radians, in SMPL's frame:
x right-to-left of the body... precisely +x = the body's left, +y up, +z forward). The signs
follow from that frame; for example a left elbow flexes with a negative y rotation and a knee
with a positive x rotation, the conventions SMPLify's angle prior assumes. Ranges are rounded
textbook ranges of motion (hip flexion about 120 degrees, knee flexion about 135, shoulder
elevation about 170, ...), not measured data.

Poses are drawn per component from a mixture: half uniform over the range (to cover it), half a
Gaussian around the neutral pose with a third of the range as deviation, clipped (to make
near-neutral poses, which people hold most, more likely). This is the open source of poses for
the default GMM prior of the open body model; it is not a mocap distribution.
"""

import numpy as np

from smpl_jax.joints import SMPL_JOINT_NAMES

_LIMITS = {  # joint: ((x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi)) in radians; left side
    "hip": ((-2.0, 0.5), (-0.6, 0.6), (-0.4, 0.8)),
    "knee": ((0.0, 2.3), (-0.1, 0.1), (-0.1, 0.1)),
    "ankle": ((-0.5, 0.7), (-0.3, 0.3), (-0.3, 0.3)),
    "foot": ((-0.3, 0.5), (-0.1, 0.1), (-0.1, 0.1)),
    "spine1": ((-0.25, 0.5), (-0.3, 0.3), (-0.25, 0.25)),
    "spine2": ((-0.2, 0.4), (-0.25, 0.25), (-0.2, 0.2)),
    "spine3": ((-0.2, 0.4), (-0.25, 0.25), (-0.2, 0.2)),
    "neck": ((-0.5, 0.6), (-0.6, 0.6), (-0.4, 0.4)),
    "head": ((-0.3, 0.4), (-0.4, 0.4), (-0.3, 0.3)),
    "collar": ((-0.2, 0.2), (-0.3, 0.3), (-0.2, 0.4)),
    "shoulder": ((-1.0, 1.0), (-1.5, 0.6), (-1.4, 1.2)),
    "elbow": ((-1.0, 1.0), (-2.4, 0.0), (-0.1, 0.1)),
    "wrist": ((-0.6, 0.6), (-0.4, 0.4), (-0.8, 0.6)),
    "hand": ((-0.3, 0.3), (-0.2, 0.2), (-0.4, 0.3)),
}  # fmt: skip


def _mirror(limits):
  """Right side from the left: the mirror through x = 0 negates the y and z components."""
  (xl, xh), (yl, yh), (zl, zh) = limits
  return ((xl, xh), (-yh, -yl), (-zh, -zl))


def joint_limits() -> np.ndarray:
  """(23, 3, 2) lower / upper bounds of the body pose's axis-angle components."""
  out = []
  for name in SMPL_JOINT_NAMES[1:]:
    side, _, base = name.partition("_") if name.startswith(("left_", "right_")) else ("", "", name)
    lim = _LIMITS[base]
    out.append(_mirror(lim) if side == "right" else lim)
  return np.asarray(out, np.float64)


def sample_body_poses(n: int, seed: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
  """(n, 69) body poses (axis-angle, SMPL order) within the joint limits; `rng` overrides
  `seed`."""
  rng = np.random.default_rng(seed) if rng is None else rng
  lim = joint_limits().reshape(69, 2)
  lo, hi = lim[:, 0], lim[:, 1]
  uniform = rng.uniform(lo, hi, size=(n, 69))
  gaussian = np.clip(rng.normal(scale=(hi - lo) / 3.0, size=(n, 69)), lo, hi)
  pick = rng.random((n, 69)) < 0.5
  return np.where(pick, uniform, gaussian)
