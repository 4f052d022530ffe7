"""Poses for the synthetic people: everyday activities plus the joint-limit sampler.

People in photographs mostly stand, walk, sit, squat, reach or hold their arms out, with their
joints moving together. Independent random joint angles (`fitting.pose_sampler`) cover the
range of motion but look like nothing people do and make a hard, high-entropy target. Here a
pose is, with probability `1 - random_fraction`, one of a few parametrised activities (walk
phase, sitting depth, arm heights, ...) with small per-joint noise, and otherwise a joint-limit
sample; everything is clipped to the joint limits.

Axis-angle components in SMPL's frame (+x = the body's left, +y up, +z forward): hip flexion
is a negative x rotation, knee flexion positive x, spine flexion positive x; a left arm goes down
from the T-pose with a negative z rotation at the shoulder (the right arm mirrored: y and z
negated), a left elbow flexes with a negative y rotation.
"""

import numpy as np

from fitting import pose_sampler
from smpl_jax.joints import SMPL_JOINT_NAMES

_J = {n: i - 1 for i, n in enumerate(SMPL_JOINT_NAMES)}  # body-pose joint index (root excluded)
_LIMITS = pose_sampler.joint_limits()  # (23, 3, 2)
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
    pose = pose_sampler.sample_body_poses(1, rng=rng)[0].reshape(23, 3) * rng.uniform(
      *random_scale
    )
  else:
    pose = activity_pose(rng, ACTIVITIES[rng.integers(len(ACTIVITIES))])
  return np.clip(pose, _LIMITS[..., 0], _LIMITS[..., 1]).reshape(69)
