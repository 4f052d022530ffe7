"""Joint sets against SPIN's literal tables, and flip permutations against joint names."""

import jax
import numpy as np

from smpl_jax import joints


def test_flip_permutations_are_spins():
  # SPIN constants.py, verbatim (SPIN_SPEC 1.4).
  assert joints.SMPL_JOINTS_FLIP_PERM == (
    0,
    2,
    1,
    3,
    5,
    4,
    6,
    8,
    7,
    9,
    11,
    10,
    12,
    14,
    13,
    15,
    17,
    16,
    19,
    18,
    21,
    20,
    23,
    22,
  )
  j24 = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22]
  assert list(joints.J24_FLIP_PERM) == j24
  assert list(joints.SPIN49_FLIP_PERM) == [
    0,
    1,
    5,
    6,
    7,
    2,
    3,
    4,
    8,
    12,
    13,
    14,
    9,
    10,
    11,
    16,
    15,
    18,
    17,
    22,
    23,
    24,
    19,
    20,
    21,
  ] + [25 + i for i in j24]
  assert joints.H36M_TO_J17 == (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)


def _mirror_name(name):
  for a, b in (("Left", "Right"), ("left", "right"), ("OP L", "OP R")):
    if a in name:
      return name.replace(a, b)
    if b in name:
      return name.replace(b, a)
  return name


def test_flip_permutations_swap_left_and_right_names():
  for names, perm in (
    (joints.SPIN49_NAMES, joints.SPIN49_FLIP_PERM),
    (joints.SMPL_JOINT_NAMES, joints.SMPL_JOINTS_FLIP_PERM),
    (joints.H36M17_NAMES, joints.H36M17_FLIP_PERM),
  ):
    assert [names[p] for p in perm] == [_mirror_name(n) for n in names]
    assert [perm[p] for p in perm] == list(range(len(perm)))  # an involution


def test_joint_index_constants_name_their_joints():
  names = joints.SPIN49_NAMES
  assert [names[i] for i in joints.OP_TORSO] == [
    "OP RHip",
    "OP LHip",
    "OP RShoulder",
    "OP LShoulder",
  ]
  assert [names[i] for i in joints.GT_TORSO] == [
    "Right Hip",
    "Left Hip",
    "Right Shoulder",
    "Left Shoulder",
  ]
  gt24 = names[joints.GT24]
  assert [gt24[i] for i in joints.J24_HIPS] == ["Right Hip", "Left Hip"]
  assert gt24[joints.J24_PELVIS] == "Pelvis (MPII)"
  j14 = [gt24[i] for i in joints.J24_TO_J14]
  assert [j14[i] for i in joints.J14_HIPS] == ["Right Hip", "Left Hip"]


def test_spin49_sources_are_spins_joint_map():
  # SPIN's JOINT_MAP source indices into smplx's 45 joints + J_regressor_extra's 9 (SPIN_SPEC 1.4).
  src = [
    24,
    12,
    17,
    19,
    21,
    16,
    18,
    20,
    0,
    2,
    5,
    8,
    1,
    4,
    7,
    25,
    26,
    27,
    28,
    29,
    30,
    31,
    32,
    33,
    34,
    8,
    5,
    45,
    46,
    4,
    7,
    21,
    19,
    17,
    16,
    18,
    20,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    24,
    26,
    25,
    28,
    27,
  ]
  smplx45 = [f"joint:{n}" for n in joints.SMPL_JOINT_NAMES] + [
    f"keypoint:{n}" for n, _ in joints.SMPL_VERTEX_KEYPOINTS
  ]
  names54 = smplx45 + [f"keypoint:{n}" for n in joints.SPIN_EXTRA_REGRESSOR_NAMES]
  assert list(joints.SPIN49_SMPL_SOURCES) == [names54[i] for i in src]


def test_mirrored_open_model_keypoints_follow_the_flip_permutation(lowres_model):
  import smpl_jax

  out = jax.jit(smpl_jax.forward)(lowres_model)  # the rest pose is close to mirror-symmetric
  for name in ("spin49", "h36m17", "smpl24"):
    pts = np.asarray(out.joint_sets[name])
    mirrored = pts[list(lowres_model.joint_set(name).flip_perm)] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, pts, atol=0.02)
