"""SPIN's geometric augmentation of SMPL parameters and joints (SPIN_SPEC 7.3), in JAX.

A horizontal image flip mirrors the body through the camera's x = 0 plane: joints swap left and
right (the joint set's flip permutation) and negate x; an axis-angle pose swaps left and right
joints and negates the y and z components (a rotation vector is a pseudovector, so the mirror
M = diag(-1, 1, 1) maps w to det(M) M w = (w_x, -w_y, -w_z)). An in-plane image rotation by
`angle_deg` (counter-clockwise on screen) rotates the body about the camera's z axis by
-angle_deg: the global orientation becomes R_z(-angle) R and 3D joints rotate likewise (SPIN's
`rot_aa` and `S` rotation). All functions broadcast over leading axes and are their own
inverses (flips) or are undone by the negated angle (rotations), which the fits dictionary uses
to store fits in the canonical frame.
"""

import jax.numpy as jnp
from jaxtyping import Float

from smpl_jax import rotations
from smpl_jax.joints import SMPL_JOINTS_FLIP_PERM
from smpl_jax.typing import Array


def flip_pose(pose: Float[Array, "*B 72"]) -> Float[Array, "*B 72"]:
  """Mirror of an SMPL axis-angle pose (root included): SPIN's flip_pose."""
  aa = pose.reshape(*pose.shape[:-1], 24, 3)[..., jnp.asarray(SMPL_JOINTS_FLIP_PERM), :]
  aa = aa * jnp.asarray([1.0, -1.0, -1.0], pose.dtype)
  return aa.reshape(pose.shape)


def flip_points(points: Float[Array, "*B K D"], flip_perm) -> Float[Array, "*B K D"]:
  """Mirror of joints or keypoints: permute with the joint set's flip permutation and negate
  x. Works for 3D joints and for 2D keypoints in coordinates centred on the image (SPIN's
  normalised [-1, 1] crop coordinates); any extra columns (confidence) are kept."""
  out = jnp.asarray(points)[..., jnp.asarray(flip_perm), :]
  return out.at[..., 0].multiply(-1.0)


def _rot_z(angle_deg, dtype):
  a = jnp.deg2rad(jnp.asarray(angle_deg, dtype))
  c, s = jnp.cos(a), jnp.sin(a)
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack(
    [jnp.stack([c, -s, zero], -1), jnp.stack([s, c, zero], -1), jnp.stack([zero, zero, one], -1)],
    -2,
  )


def rotate_global_orient(
  global_orient: Float[Array, "*B 3"], angle_deg: Float[Array, "*#B"] | float
) -> Float[Array, "*B 3"]:
  """Global orientation after an in-plane image rotation by angle_deg: R_z(-angle) R."""
  r = rotations.aa_to_rotmat(global_orient)
  rot_z = _rot_z(-jnp.asarray(angle_deg), global_orient.dtype)
  return rotations.rotmat_to_aa(jnp.matmul(rot_z, r, precision="highest"))


def rotate_points(
  points: Float[Array, "*B K 3"], angle_deg: Float[Array, "*#B"] | float
) -> Float[Array, "*B K 3"]:
  """3D joints after an in-plane image rotation by angle_deg (about the camera's z axis)."""
  rot = _rot_z(-jnp.asarray(angle_deg), points.dtype)
  return jnp.einsum("...ij,...kj->...ki", rot, points, precision="highest")
