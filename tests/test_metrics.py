"""MPJPE / PA-MPJPE against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from spin_jax import metrics


def _brute_force_pa(pred, gt):
  """Similarity alignment by direct minimisation over (rotation vector, log scale, shift)."""

  def cost(x):
    r = Rotation.from_rotvec(x[:3]).as_matrix()
    aligned = np.exp(x[3]) * pred @ r.T + x[4:]
    return np.sum((aligned - gt) ** 2)

  best = min(
    (
      minimize(cost, np.r_[x0, 0.0, np.zeros(3)], method="BFGS", options={"gtol": 1e-10})
      for x0 in np.eye(3) * 2.0
    ),
    key=lambda r: r.fun,
  )
  x = best.x
  aligned = np.exp(x[3]) * pred @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[4:]
  return np.linalg.norm(aligned - gt, axis=-1).mean()


def test_pa_mpjpe_matches_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(3):
    gt = rng.normal(size=(14, 3))
    pred = gt + rng.normal(scale=0.3, size=(14, 3))
    want = _brute_force_pa(pred, gt)
    got = float(jax.jit(metrics.pa_mpjpe)(jnp.asarray(pred[None]), jnp.asarray(gt[None]))[0])
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_pa_mpjpe_ignores_similarity_transforms_and_mpjpe_ignores_shifts():
  rng = np.random.default_rng(1)
  gt = rng.normal(size=(2, 14, 3))
  r = Rotation.random(random_state=2).as_matrix()
  moved = 1.7 * gt @ r.T + np.array([0.3, -2.0, 5.0])
  np.testing.assert_allclose(metrics.pa_mpjpe(jnp.asarray(moved), jnp.asarray(gt)), 0.0, atol=1e-5)
  shifted = gt + np.array([1.0, 2.0, 3.0])
  np.testing.assert_allclose(metrics.mpjpe(jnp.asarray(shifted), jnp.asarray(gt)), 0.0, atol=1e-6)
  assert float(metrics.mpjpe(jnp.asarray(moved), jnp.asarray(gt))[0]) > 0.1
  # A reflection is not a rotation: the mirror image keeps an error.
  mirrored = gt * np.array([-1.0, 1.0, 1.0])
  assert float(metrics.pa_mpjpe(jnp.asarray(mirrored), jnp.asarray(gt))[0]) > 0.05


def test_pck_auc_pve_match_loops():
  rng = np.random.default_rng(3)
  gt = rng.normal(scale=0.3, size=(4, 17, 3))
  pred = gt + rng.normal(scale=0.08, size=(4, 17, 3))
  err = np.linalg.norm(pred - gt, axis=-1)
  for b in range(4):
    want_pck = sum(e < 0.15 for e in err[b]) / 17
    want_auc = np.mean([sum(e < t for e in err[b]) / 17 for t in np.arange(0, 151, 5) / 1000])
    np.testing.assert_allclose(float(metrics.pck(jnp.asarray(pred), jnp.asarray(gt))[b]), want_pck)
    np.testing.assert_allclose(
      float(metrics.auc(jnp.asarray(pred), jnp.asarray(gt))[b]), want_auc, rtol=1e-6
    )
  verts = rng.normal(size=(2, 50, 3))
  root = rng.normal(size=(2, 3))
  shift = np.array([0.5, -1.0, 2.0])
  np.testing.assert_allclose(
    metrics.pve(
      jnp.asarray(verts + shift), jnp.asarray(verts), jnp.asarray(root + shift), jnp.asarray(root)
    ),
    0.0,
    atol=1e-6,
  )
  noisy = verts + rng.normal(scale=0.01, size=verts.shape)
  want = np.mean([np.linalg.norm(noisy[0, v] - verts[0, v]) for v in range(50)])
  got = metrics.pve(jnp.asarray(noisy), jnp.asarray(verts), jnp.asarray(root), jnp.asarray(root))[
    0
  ]
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
