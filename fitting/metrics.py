"""Procrustes alignment and PA-MPJPE, in metres: the fitter's demo and benchmark score fits with
them, and `spin_jax.metrics` (the trainer's and evaluation's metrics) uses these same ones.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Float


def procrustes_align(pred: Float[jax.Array, "K 3"], gt: Float[jax.Array, "K 3"]):
  """pred after the similarity (scale, rotation, translation) that best fits it to gt."""
  mp, mg = pred.mean(0), gt.mean(0)
  p, g = pred - mp, gt - mg
  mm = lambda a, b: jnp.matmul(a, b, precision="highest")  # noqa: E731  (float32 on GPU/TPU)
  u, s, vt = jnp.linalg.svd(mm(p.T, g))
  d = jnp.sign(jnp.linalg.det(mm(u, vt)))
  s = s.at[-1].multiply(d)
  vt = vt.at[-1].multiply(d)
  rot = mm(u, vt)  # p @ rot ~ g
  scale = s.sum() / jnp.sum(p**2)
  return scale * mm(p, rot) + mg


def pa_mpjpe(pred: Float[jax.Array, "*B K 3"], gt: Float[jax.Array, "*B K 3"]):
  """Mean joint distance after `procrustes_align`, per example (same units as the inputs)."""
  aligned = jax.vmap(procrustes_align)(
    pred.reshape(-1, *pred.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
  )
  return (
    jnp.linalg.norm(aligned - gt.reshape(aligned.shape), axis=-1).mean(-1).reshape(pred.shape[:-2])
  )
