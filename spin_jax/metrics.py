"""3D pose metrics (SPIN_SPEC 9): MPJPE and PA-MPJPE on root-aligned joints, in metres.

The trainer's validation compares the same joint definitions on both sides: the body model's
24 SPIN joints, reduced to SPIN's 14 evaluation joints (`j14`) and aligned on the hips'
midpoint. SPIN's published protocol (H36M regressor joints for the prediction, dataset joints
for the ground truth) belongs to the evaluation CLI.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Float

from smpl_jax.joints import J24_TO_J14

# SPIN evaluates LSP's 14 joints and aligns on the pelvis = midpoint of the hips (J14 rows 2, 3).
HIPS_J14 = (2, 3)


def procrustes_align(pred: Float[jax.Array, "K 3"], gt: Float[jax.Array, "K 3"]):
  """pred after the similarity (scale, rotation, translation) that best fits it to gt."""
  mp, mg = pred.mean(0), gt.mean(0)
  p, g = pred - mp, gt - mg
  u, s, vt = jnp.linalg.svd(p.T @ g)
  d = jnp.sign(jnp.linalg.det(u @ vt))
  s = s.at[-1].multiply(d)
  vt = vt.at[-1].multiply(d)
  rot = u @ vt  # p @ rot ~ g
  scale = s.sum() / jnp.sum(p**2)
  return scale * p @ rot + mg


def mpjpe(pred, gt):
  """Mean joint distance after aligning the hip midpoints (per example)."""
  hip = lambda x: x[..., HIPS_J14, :].mean(-2, keepdims=True)  # noqa: E731
  return jnp.linalg.norm((pred - hip(pred)) - (gt - hip(gt)), axis=-1).mean(-1)


def pa_mpjpe(pred, gt):
  aligned = jax.vmap(procrustes_align)(
    pred.reshape(-1, *pred.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
  )
  return (
    jnp.linalg.norm(aligned - gt.reshape(aligned.shape), axis=-1).mean(-1).reshape(pred.shape[:-2])
  )


def j14(j24):
  return j24[..., jnp.asarray(J24_TO_J14), :]
