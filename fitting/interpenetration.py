"""A sphere-based interpenetration penalty (optional in SMPLify, off by default).

The original SMPLify approximated the body by capsules made of spheres and penalised spheres of
different parts that overlap. Here each bone (parent joint -> child joint) of the limbs, torso
and head carries `SPHERES_PER_BONE` spheres along the segment; a sphere's centre is a fixed
blend of the two posed joints, so spheres follow the skeleton exactly. Radii come from the rest
mesh of the shaped body: the mean distance from the segment of the vertices that this bone's
joint skins most. Spheres of bones that share a joint, or that belong to the same limb chain,
are never compared; every other pair costs relu(r_i + r_j - |c_i - c_j|)^2 (metres^2).
"""

import itertools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from smpl_jax.joints import SMPL_JOINT_NAMES
from smpl_jax.typing import Array

SPHERES_PER_BONE = 3
# (parent joint, child joint) segments: legs, arms, spine, neck/head.
_BONES = (
  ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
  ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
  ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
  ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
  ("pelvis", "spine2"), ("spine2", "neck"), ("neck", "head"),
)  # fmt: skip
_CHAINS = {  # bones of one chain never penalise each other
  "left_leg": (0, 1), "right_leg": (2, 3), "left_arm": (4, 5), "right_arm": (6, 7),
  "trunk": (8, 9, 10),
}  # fmt: skip
# Limbs attach to the trunk: their first bone is not compared with the trunk bone it joins.
_ATTACHED = {(0, 8), (2, 8), (4, 9), (6, 9), (4, 10), (6, 10)}


def bone_indices():
  """(bones, 2) joint indices of the bones, in SMPL's joint order."""
  return np.asarray([[SMPL_JOINT_NAMES.index(a), SMPL_JOINT_NAMES.index(b)] for a, b in _BONES])


def sphere_pairs() -> np.ndarray:
  """(pairs, 2) indices of the spheres whose overlap is penalised."""
  chain_of = {b: c for c, bones in _CHAINS.items() for b in bones}
  pairs = []
  for a, b in itertools.combinations(range(len(_BONES)), 2):
    if chain_of[a] == chain_of[b] or (a, b) in _ATTACHED or (b, a) in _ATTACHED:
      continue
    for i in range(SPHERES_PER_BONE):
      for j in range(SPHERES_PER_BONE):
        pairs.append((a * SPHERES_PER_BONE + i, b * SPHERES_PER_BONE + j))
  return np.asarray(pairs, np.int32)


def _blend():
  t = (np.arange(SPHERES_PER_BONE) + 0.5) / SPHERES_PER_BONE
  return t  # position of each sphere along its bone, 0 = parent joint


def sphere_radii(
  v_shaped: Float[Array, "V 3"], weights: Float[Array, "V J"], rest_joints: Float[Array, "J 3"]
) -> Float[Array, " Q"]:
  """Radius of every sphere (bones x SPHERES_PER_BONE): mean distance from the bone segment of
  the vertices its parent joint skins most (rest pose, shaped body)."""
  bones = bone_indices()
  owner = jnp.argmax(weights, axis=1)
  radii = []
  for parent, child in bones:
    a, b = rest_joints[parent], rest_joints[child]
    ab = b - a
    t = jnp.clip((v_shaped - a) @ ab / jnp.sum(ab * ab), 0.0, 1.0)
    dist = jnp.linalg.norm(v_shaped - (a + t[:, None] * ab), axis=1)
    mask = (owner == parent).astype(dist.dtype)
    r = jnp.sum(mask * dist) / jnp.maximum(jnp.sum(mask), 1.0)
    radii.append(jnp.full((SPHERES_PER_BONE,), r))
  return jnp.concatenate(radii)


def sphere_centres(posed_joints: Float[Array, "J 3"]) -> Float[Array, "Q 3"]:
  bones = bone_indices()
  t = jnp.asarray(_blend(), posed_joints.dtype)[None, :, None]
  a, b = posed_joints[bones[:, 0]][:, None], posed_joints[bones[:, 1]][:, None]
  return ((1 - t) * a + t * b).reshape(-1, 3)


def overlap_residuals(posed_joints: Float[Array, "J 3"], radii: Float[Array, " Q"]):
  """relu(r_i + r_j - |c_i - c_j|) for every penalised pair (metres); squared sum = penalty."""
  pairs = sphere_pairs()
  c = sphere_centres(posed_joints)
  d = c[pairs[:, 0]] - c[pairs[:, 1]]
  dist = jnp.sqrt(jnp.sum(d * d, axis=1) + 1e-12)
  return jnp.maximum(radii[pairs[:, 0]] + radii[pairs[:, 1]] - dist, 0.0)
