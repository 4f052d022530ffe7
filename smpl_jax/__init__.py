"""smpl_jax: a pure-JAX SMPL body model.

import jax, smpl_jax
model = smpl_jax.load_model()                 # the embedded open model; or a path to SMPL
out = jax.jit(smpl_jax.forward)(model, betas=..., body_pose=..., global_orient=...)
out.vertices, out.joints, out.joint_sets["spin49"]
"""

from smpl_jax import camera, joints, rotations
from smpl_jax.body_model import (
  BodyModel,
  BodyOutput,
  JointSet,
  build_model,
  forward,
  forward_batch,
  forward_joints,
  forward_joints_batch,
  kinematic_chain,
  regress_keypoints,
  rest_joints,
)
from smpl_jax.io import load_model, load_open_model, open_model_path, read_smpl_pkl

__all__ = [
  "BodyModel",
  "BodyOutput",
  "JointSet",
  "build_model",
  "camera",
  "forward",
  "forward_batch",
  "forward_joints",
  "forward_joints_batch",
  "joints",
  "kinematic_chain",
  "load_model",
  "load_open_model",
  "open_model_path",
  "read_smpl_pkl",
  "regress_keypoints",
  "rest_joints",
  "rotations",
]
