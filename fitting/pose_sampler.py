"""Body-pose samplers in SMPL's joint order and frame: anatomical joint-limit samples
(`sample_body_poses`) and everyday poses built on them (`sample_pose`).

Each of the 23 body joints gets a range per axis-angle component (radians, in SMPL's frame:
x right-to-left of the body... precisely +x = the body's left, +y up, +z forward). The signs
follow from that frame; for example a left elbow flexes with a negative y rotation and a knee
with a positive x rotation, the conventions SMPLify's angle prior assumes. Ranges are rounded
textbook ranges of motion (hip flexion about 120 degrees, knee flexion about 135, shoulder
elevation about 170, ...), not measured data.

Joint-limit poses are drawn per component from a mixture: half uniform over the range (to cover
it), half a Gaussian around the neutral pose with a third of the range as deviation, clipped (to
make near-neutral poses, which people hold most, more likely). This is the open source of poses
for the default GMM prior of the open body model; it is not a mocap distribution.

Everyday poses (`sample_pose`, the synthetic training images' poses): people in photographs
mostly stand, walk, sit, squat, reach or hold their arms out, with their joints moving together.
Independent random joint angles cover the range of motion but look like nothing people do and
make a hard, high-entropy target. So a pose is, with probability `1 - random_fraction`, one of a
few parametrised activities (walk phase, sitting depth, arm heights, ...) with small per-joint
noise, and otherwise a joint-limit sample; everything is clipped to the joint limits. In SMPL's
frame hip flexion is a negative x rotation, knee flexion positive x, spine flexion positive x; a
left arm goes down from the T-pose with a negative z rotation at the shoulder (the right arm
mirrored: y and z negated).
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


# ------------------------------------------------------------------------------ everyday poses

_J = {n: i - 1 for i, n in enumerate(SMPL_JOINT_NAMES)}  # body-pose joint index (root excluded)
_BODY_LIMITS = joint_limits()  # (23, 3, 2)
ACTIVITIES = ("stand", "walk", "sit", "squat", "reach", "arms_out")


def _set(pose, joint, x=0.0, y=0.0, z=0.0, mirror=False):
  """Sets a left joint (and with `mirror` its right twin, y and z negated)."""
  pose[_J[joint]] += (x, y, z)
  if mirror and joint.startswith("left_"):
    pose[_J["right_" + joint[5:]]] += (x, -y, -z)


def _arms(pose, rng, down):
  """Both arms lowered by `down` (radians from the T-pose) with some elbow flexion."""
  for side, sign in (("left", 1.0), ("right", -1.0)):
    _set(pose, f"{side}_shoulder", x=rng.normal(0, 0.2), z=-sign * (down + rng.normal(0, 0.15)))
    _set(pose, f"{side}_elbow", y=-sign * rng.uniform(0.0, 0.8))


def activity_pose(rng: np.random.Generator, name: str) -> np.ndarray:
  """(23, 3) body pose of one of `ACTIVITIES`, with per-joint noise (not clipped)."""
  pose = np.zeros((23, 3))
  if name == "stand":
    _arms(pose, rng, rng.uniform(1.1, 1.4))
  elif name == "walk":
    phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6)
    for side, s, sign in (("left", 1.0, 1.0), ("right", -1.0, -1.0)):
      _set(pose, f"{side}_hip", x=-amp * s * np.sin(phase))
      _set(pose, f"{side}_knee", x=amp * 1.4 * max(0.0, np.sin(phase + s * 1.2)) + 0.1)
      _set(pose, f"{side}_shoulder", x=-amp * s * np.sin(phase) * 0.8, z=-sign * 1.25)
      _set(pose, f"{side}_elbow", y=-sign * rng.uniform(0.2, 0.7))
  elif name == "sit":
    hip, knee = rng.uniform(1.2, 1.7), rng.uniform(1.2, 1.9)
    for side in ("left", "right"):
      _set(pose, f"{side}_hip", x=-hip + rng.normal(0, 0.1), z=rng.normal(0, 0.1))
      _set(pose, f"{side}_knee", x=knee + rng.normal(0, 0.15))
    _set(pose, "spine1", x=rng.uniform(-0.1, 0.3))
    _arms(pose, rng, rng.uniform(0.9, 1.4))
  elif name == "squat":
    depth = rng.uniform(0.5, 1.0)
    for side in ("left", "right"):
      _set(pose, f"{side}_hip", x=-1.9 * depth)
      _set(pose, f"{side}_knee", x=2.2 * depth)
      _set(pose, f"{side}_ankle", x=0.5 * depth)
    _set(pose, "spine1", x=0.4 * depth)
    _set(pose, "spine2", x=0.2 * depth)
    _arms(pose, rng, rng.uniform(0.3, 1.2))
  elif name == "reach":
    _arms(pose, rng, rng.uniform(1.0, 1.4))
    sides = [("left", 1.0), ("right", -1.0)]
    for side, sign in sides if rng.random() < 0.4 else [sides[rng.integers(2)]]:
      pose[_J[f"{side}_shoulder"]] = (rng.normal(0, 0.3), 0.0, sign * rng.uniform(0.3, 1.2))
      pose[_J[f"{side}_elbow"]] = (0.0, -sign * rng.uniform(0.0, 0.5), 0.0)
    _set(pose, "spine2", y=rng.normal(0, 0.15), z=rng.normal(0, 0.1))
  elif name == "arms_out":
    _arms(pose, rng, rng.uniform(-0.3, 0.6))
  else:
    raise ValueError(f"unknown activity {name!r}; one of {ACTIVITIES}")
  pose += rng.normal(0, 0.06, pose.shape)
  _set(pose, "neck", x=rng.normal(0, 0.15), y=rng.normal(0, 0.2))
  return pose


def sample_pose(rng: np.random.Generator, random_fraction: float, random_scale) -> np.ndarray:
  """(69,) body pose: an activity or, with probability `random_fraction`, a joint-limit
  sample scaled by U(*random_scale); clipped to the joint limits."""
  if rng.random() < random_fraction:
    pose = sample_body_poses(1, rng=rng)[0].reshape(23, 3) * rng.uniform(*random_scale)
  else:
    pose = activity_pose(rng, ACTIVITIES[rng.integers(len(ACTIVITIES))])
  return np.clip(pose, _BODY_LIMITS[..., 0], _BODY_LIMITS[..., 1]).reshape(69)
