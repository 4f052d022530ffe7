"""3D pose metrics (SPIN_SPEC 9): MPJPE and PA-MPJPE on root-aligned joints, in metres.

The trainer's validation compares the same joint definitions on both sides: the body model's
24 SPIN joints, reduced to SPIN's 14 evaluation joints (`j14`) and aligned on the hips'
midpoint. SPIN's published protocol (H36M regressor joints for the prediction, dataset joints
for the ground truth) belongs to the evaluation CLI.
"""

import jax.numpy as jnp
import numpy as np

from fitting.metrics import pa_mpjpe, procrustes_align
from smpl_jax.joints import J14_HIPS, J24_TO_J14

# Procrustes and PA-MPJPE are the fitter's (fitting.metrics), listed here with the others.
__all__ = [
  "AUC_THRESHOLDS",
  "PCK_THRESHOLD",
  "auc",
  "j14",
  "mpjpe",
  "pa_mpjpe",
  "pck",
  "procrustes_align",
  "pve",
]


def mpjpe(pred, gt):
  """Mean joint distance after aligning the hip midpoints (per example)."""
  hip = lambda x: x[..., J14_HIPS, :].mean(-2, keepdims=True)  # noqa: E731
  return jnp.linalg.norm((pred - hip(pred)) - (gt - hip(gt)), axis=-1).mean(-1)


def j14(j24):
  return j24[..., jnp.asarray(J24_TO_J14), :]


# MPI-INF-3DHP's thresholds: PCK at 150 mm, AUC as the mean PCK over 0, 5, ..., 150 mm.
PCK_THRESHOLD = 0.15
AUC_THRESHOLDS = tuple(np.linspace(0.0, 0.15, 31))


def pck(pred, gt, threshold: float = PCK_THRESHOLD):
  """Fraction of joints within `threshold` metres, per example (inputs already root-aligned)."""
  return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1) < threshold, axis=-1)


def auc(pred, gt, thresholds=AUC_THRESHOLDS):
  """Mean PCK over `thresholds`, per example."""
  err = jnp.linalg.norm(pred - gt, axis=-1)[..., None, :]
  return jnp.mean(err < jnp.asarray(thresholds)[:, None], axis=(-2, -1))


def pve(pred_vertices, gt_vertices, pred_root, gt_root):
  """Mean per-vertex distance after moving each mesh's root joint to the origin."""
  d = (pred_vertices - pred_root[..., None, :]) - (gt_vertices - gt_root[..., None, :])
  return jnp.linalg.norm(d, axis=-1).mean(-1)
