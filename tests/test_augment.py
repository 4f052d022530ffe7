"""SPIN's pose / joint augmentation: inverses, and agreement with the posed body."""

import jax
import jax.numpy as jnp
import numpy as np

import smpl_jax
from smpl_jax import augment, joints


def _pose(seed, n=4):
  return np.random.default_rng(seed).normal(scale=0.5, size=(n, 72)).astype(np.float32)


def test_flip_twice_and_rotate_back_are_identities():
  pose = _pose(0)
  np.testing.assert_allclose(augment.flip_pose(augment.flip_pose(pose)), pose, atol=1e-7)
  go = pose[:, :3]
  back = augment.rotate_global_orient(augment.rotate_global_orient(go, 30.0), -30.0)
  r = smpl_jax.rotations.aa_to_rotmat
  np.testing.assert_allclose(r(back), r(go), atol=1e-5)
  pts = np.random.default_rng(1).normal(size=(4, 49, 3)).astype(np.float32)
  np.testing.assert_allclose(
    augment.flip_points(
      augment.flip_points(pts, joints.SPIN49_FLIP_PERM), joints.SPIN49_FLIP_PERM
    ),
    pts,
  )


def test_flipped_pose_poses_the_mirrored_body(lowres_model):
  # The body posed with flip_pose(pose) is the mirror image of the body posed with pose, to
  # within the model's own left-right asymmetry (about 1-2 cm for the open model).
  model = lowres_model
  pose = _pose(2, 1)[0] * 0.6
  f = jax.jit(smpl_jax.forward)
  a = f(model, None, pose[:3], pose[3:]).joints
  b = f(model, None, augment.flip_pose(pose)[:3], augment.flip_pose(pose)[3:]).joints
  mirrored = augment.flip_points(a, joints.SMPL_JOINTS_FLIP_PERM)
  np.testing.assert_allclose(b - b[0], mirrored - mirrored[0], atol=0.03)


def test_rotated_global_orient_rotates_the_posed_body_about_the_root(lowres_model):
  pose = _pose(3, 1)[0]
  f = jax.jit(smpl_jax.forward)
  a = f(lowres_model, None, pose[:3], pose[3:])
  go = augment.rotate_global_orient(jnp.asarray(pose[:3]), 25.0)
  b = f(lowres_model, None, go, pose[3:])
  root = a.joints[0]
  np.testing.assert_allclose(
    b.vertices - root, augment.rotate_points(a.vertices - root, 25.0), atol=1e-5
  )
  # A positive image angle turns the body clockwise about the camera's z axis.
  x_axis = augment.rotate_points(jnp.array([[1.0, 0.0, 0.0]]), 90.0)
  np.testing.assert_allclose(x_axis[0], [0.0, -1.0, 0.0], atol=1e-6)
