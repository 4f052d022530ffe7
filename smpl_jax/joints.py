"""Joint names, SPIN's 49-joint set and the 17 Human3.6M joints, with their flip permutations.

A joint set is defined per body model (`body_model.JointSet`): each entry names a source, either a
kinematic joint or a keypoint regressed from the posed mesh. For SMPL the keypoints are smplx's
vertex picks (face, feet, finger tips) plus the rows of SPIN's `J_regressor_extra.npy` and
`J_regressor_h36m.npy`, which users bring from SPIN's data. The open body model ships its own
keypoint regressors (see `smpl_jax/data/README.md`).
"""

from smpl_jax.body_model import JointSet

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# Mirror image of each SMPL joint (SPIN's SMPL_JOINTS_FLIP_PERM).
SMPL_JOINTS_FLIP_PERM = (
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

# smplx's VertexJointSelector for SMPL (vertex ids on the 6890-vertex SMPL mesh), in smplx order.
SMPL_VERTEX_KEYPOINTS = (
    ("nose", 332), ("right_eye", 6260), ("left_eye", 2800), ("right_ear", 4071),
    ("left_ear", 583), ("left_big_toe", 3216), ("left_small_toe", 3226), ("left_heel", 3387),
    ("right_big_toe", 6617), ("right_small_toe", 6624), ("right_heel", 6787),
    ("left_thumb", 2746), ("left_index", 2319), ("left_middle", 2445), ("left_ring", 2556),
    ("left_pinky", 2673), ("right_thumb", 6191), ("right_index", 5782), ("right_middle", 5905),
    ("right_ring", 6016), ("right_pinky", 6133),
)  # fmt: skip
# Rows of SPIN's J_regressor_extra.npy (9, 6890), in file order (SPIN_SPEC 1.4).
SPIN_EXTRA_REGRESSOR_NAMES = (
    "lsp_right_hip", "lsp_left_hip", "lsp_neck", "lsp_head_top", "mpii_pelvis", "mpii_thorax",
    "h36m_spine", "h36m_jaw", "h36m_head",
)  # fmt: skip

# SPIN's 49 joints: 25 OpenPose BODY_25 joints, then the 24 "ground-truth" joints.
SPIN49_NAMES = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow",
    "OP LWrist", "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee",
    "OP LAnkle", "OP REye", "OP LEye", "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe",
    "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle",
    "Right Wrist", "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)",
    "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)  # fmt: skip
OPENPOSE = slice(0, 25)
GT24 = slice(25, 49)
J24_HIPS = (2, 3)  # Right Hip, Left Hip of the 24 ground-truth joints: SPIN's 3D pelvis
J24_PELVIS = 14  # "Pelvis (MPII)" of the 24 ground-truth joints
# SPIN49 indices of the torso (right hip, left hip, right shoulder, left shoulder) that SMPLify's
# camera stage fits: OpenPose's, and the ground-truth one (SPIN_SPEC 4.2).
OP_TORSO = (9, 12, 2, 5)  # OP RHip, OP LHip, OP RShoulder, OP LShoulder
GT_TORSO = (27, 28, 33, 34)  # Right Hip, Left Hip, Right Shoulder, Left Shoulder
J24_FLIP_PERM = (
  5,
  4,
  3,
  2,
  1,
  0,
  11,
  10,
  9,
  8,
  7,
  6,
  12,
  13,
  14,
  15,
  16,
  17,
  18,
  19,
  21,
  20,
  23,
  22,
)
SPIN49_FLIP_PERM = (
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
) + tuple(25 + i for i in J24_FLIP_PERM)

# Sources of SPIN's 49 joints on SMPL (SPIN's JOINT_MAP resolved to names): "joint:<smpl joint>"
# or "keypoint:<keypoint name>".
SPIN49_SMPL_SOURCES = (
    "keypoint:nose", "joint:neck", "joint:right_shoulder", "joint:right_elbow",
    "joint:right_wrist", "joint:left_shoulder", "joint:left_elbow", "joint:left_wrist",
    "joint:pelvis", "joint:right_hip", "joint:right_knee", "joint:right_ankle", "joint:left_hip",
    "joint:left_knee", "joint:left_ankle", "keypoint:right_eye", "keypoint:left_eye",
    "keypoint:right_ear", "keypoint:left_ear", "keypoint:left_big_toe", "keypoint:left_small_toe",
    "keypoint:left_heel", "keypoint:right_big_toe", "keypoint:right_small_toe",
    "keypoint:right_heel",
    "joint:right_ankle", "joint:right_knee", "keypoint:lsp_right_hip", "keypoint:lsp_left_hip",
    "joint:left_knee", "joint:left_ankle", "joint:right_wrist", "joint:right_elbow",
    "joint:right_shoulder", "joint:left_shoulder", "joint:left_elbow", "joint:left_wrist",
    "keypoint:lsp_neck", "keypoint:lsp_head_top", "keypoint:mpii_pelvis", "keypoint:mpii_thorax",
    "keypoint:h36m_spine", "keypoint:h36m_jaw", "keypoint:h36m_head", "keypoint:nose",
    "keypoint:left_eye", "keypoint:right_eye", "keypoint:left_ear", "keypoint:right_ear",
)  # fmt: skip

# The 17 Human3.6M joints in the row order of SPIN's J_regressor_h36m.npy, named as SPIN's
# H36M_TO_J17 / J24_TO_J17 maps use them (J17 "Right Ankle" = row 6, "Left Hip" = row 1, ...).
H36M17_NAMES = (
    "Pelvis", "Left Hip", "Left Knee", "Left Ankle", "Right Hip", "Right Knee", "Right Ankle",
    "Spine", "Thorax", "Jaw", "Head", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Right Shoulder", "Right Elbow", "Right Wrist",
)  # fmt: skip
H36M17_FLIP_PERM = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)
# SPIN's evaluation selectors (constants.py).
H36M_TO_J17 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
H36M_TO_J14 = H36M_TO_J17[:14]
J24_TO_J17 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17)
J24_TO_J14 = J24_TO_J17[:14]
J14_HIPS = tuple(J24_TO_J14.index(j) for j in J24_HIPS)  # (2, 3): SPIN's evaluation pelvis


def resolve_sources(
  sources: tuple[str | None, ...],
  joint_names: tuple[str, ...],
  keypoint_names: tuple[str, ...],
) -> tuple[int, ...]:
  """Maps "joint:<name>" / "keypoint:<name>" sources to indices into [joints, keypoints].

  A source that is None or names a keypoint the model does not have maps to -1 (undefined).
  """
  out = []
  for src in sources:
    if src is None:
      out.append(-1)
      continue
    kind, _, name = src.partition(":")
    if kind == "joint" and name in joint_names:
      out.append(joint_names.index(name))
    elif kind == "keypoint" and name in keypoint_names:
      out.append(len(joint_names) + keypoint_names.index(name))
    elif kind in ("joint", "keypoint"):
      out.append(-1)
    else:
      raise ValueError(f"joint source {src!r} is neither 'joint:<name>' nor 'keypoint:<name>'.")
  return tuple(out)


def make_joint_set(name, names, sources, flip_perm, joint_names, keypoint_names) -> JointSet:
  return JointSet(
    name=name,
    names=tuple(names),
    sources=resolve_sources(tuple(sources), tuple(joint_names), tuple(keypoint_names)),
    flip_perm=tuple(flip_perm),
  )


def smpl_joint_sets(keypoint_names: tuple[str, ...], has_h36m: bool) -> tuple[JointSet, ...]:
  """SMPL's joint sets: SPIN's 49 (always; rows need J_regressor_extra) and H36M 17 if present."""
  sets = [
    make_joint_set(
      "smpl24",
      SMPL_JOINT_NAMES,
      [f"joint:{n}" for n in SMPL_JOINT_NAMES],
      SMPL_JOINTS_FLIP_PERM,
      SMPL_JOINT_NAMES,
      keypoint_names,
    ),
    make_joint_set(
      "spin49",
      SPIN49_NAMES,
      SPIN49_SMPL_SOURCES,
      SPIN49_FLIP_PERM,
      SMPL_JOINT_NAMES,
      keypoint_names,
    ),
  ]
  if has_h36m:
    sets.append(
      make_joint_set(
        "h36m17",
        H36M17_NAMES,
        [f"keypoint:h36m17_{i}" for i in range(17)],
        H36M17_FLIP_PERM,
        SMPL_JOINT_NAMES,
        keypoint_names,
      )
    )
  return tuple(sets)
