"""Geometry keeps float32 under a low default matmul precision (what GPUs and TPUs default to).

On TPUs and recent GPUs a float32 matmul with DEFAULT precision runs in bfloat16 or TF32 passes;
a rotation composed, a camera solved or a Procrustes alignment done that way is off by ~1e-3
relative. The CPU ignores the setting, so numbers alone cannot show it here: the test reads the
traced programs under `jax_default_matmul_precision="bfloat16"` and requires every matrix
product of the geometry to ask for HIGHEST explicitly, then checks the values against float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

import smpl_jax
from fitting import priors, smplify
from fitting.smplify import FitParams
from smpl_jax import augment, camera, rotations
from spin_jax import metrics
from spin_jax import train_step as ts

HIGHEST = jax.lax.Precision.HIGHEST


def _products(jaxpr):
  """Every dot_general / convolution in a jaxpr, nested ones (scan, while, cond, pjit) included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, ClosedJaxpr):
          yield from _products(sub.jaxpr)
        elif isinstance(sub, Jaxpr):
          yield from _products(sub)


def _low_precision_products(fn, *args):
  with jax.default_matmul_precision("bfloat16"):
    closed = jax.make_jaxpr(fn)(*args)
  bad = []
  for eqn in _products(closed.jaxpr):
    precision = eqn.params.get("precision")
    if not (isinstance(precision, tuple) and all(p == HIGHEST for p in precision)):
      frame = jax._src.source_info_util.user_frame(eqn.source_info.traceback)
      bad.append(f"{frame.file_name}:{frame.start_line}" if frame else str(eqn))
  return sorted(set(bad))


@pytest.fixture(scope="module")
def setup(lowres_model):
  rng = np.random.default_rng(0)
  b = 4
  aa = jnp.asarray(rng.normal(scale=0.8, size=(b, 24, 3)), jnp.float32)
  pose = aa.reshape(b, 72)
  betas = jnp.asarray(rng.normal(scale=0.5, size=(b, 10)), jnp.float32)
  kp = jnp.asarray(rng.uniform(50, 170, (b, 49, 3)), jnp.float32).at[..., 2].set(1.0)
  init = FitParams(pose[0, :3], pose[0, 3:], betas[0], jnp.asarray([0.0, 0.2, 40.0]))
  return dict(
    body=lowres_model, prior=priors.load_gmm(), aa=aa, pose=pose, betas=betas, kp=kp, init=init
  )


def _programs(s):
  body, prior = s["body"], s["prior"]
  aa, pose, betas, kp, init = s["aa"], s["pose"], s["betas"], s["kp"], s["init"]
  pts = jnp.asarray(np.random.default_rng(1).normal(size=(4, 14, 3)), jnp.float32)
  return {
    "aa_to_rotmat": (rotations.aa_to_rotmat, aa),
    "rotmat_to_aa": (lambda x: rotations.rotmat_to_aa(rotations.aa_to_rotmat(x)), aa),
    "rot6d_to_rotmat": (rotations.rot6d_to_rotmat, aa.reshape(4, 12, 6)),
    "geodesic_angle": (
      lambda x: rotations.geodesic_angle(rotations.aa_to_rotmat(x), rotations.aa_to_rotmat(-x)),
      aa,
    ),
    "augment": (
      lambda p, q: (
        augment.rotate_global_orient(p[:, :3], 30.0),
        augment.rotate_points(q, 30.0),
        augment.flip_pose(p),
      ),
      pose,
      pts,
    ),
    "estimate_translation": (
      lambda j, k: camera.estimate_translation(j, k[..., :2], k[..., 2]),
      pts,
      kp[:, :14],
    ),
    "body_forward": (
      lambda p, b: smpl_jax.forward_batch(body, b, p[:, :3], p[:, 3:]).vertices,
      pose,
      betas,
    ),
    "smplify_adam": (
      lambda k, i: smplify.fit_one(body, prior, k, i, smplify.SmplifyOptions(num_iters=2)).params,
      kp[0],
      init,
    ),
    "smplify_lm": (
      lambda k, i: (
        smplify.fit_one(body, prior, k, i, smplify.SmplifyOptions(num_iters=2, solver="lm")).params
      ),
      kp[0],
      init,
    ),
    "score_fits": (
      lambda k, p, b: ts.score_fits(body, prior, k, p, b, smplify.SmplifyOptions())[0],
      kp,
      pose,
      betas,
    ),
    "pa_mpjpe": (metrics.pa_mpjpe, pts, pts * 1.1 + 0.2),
  }


def test_geometry_asks_for_highest_precision_in_every_matrix_product(setup):
  offenders = {}
  for name, (fn, *args) in _programs(setup).items():
    bad = _low_precision_products(fn, *args)
    if bad:
      offenders[name] = bad
  assert not offenders, f"matrix products without precision=HIGHEST: {offenders}"


def test_geometry_under_bfloat16_default_matches_float64(setup):
  aa = np.asarray(setup["aa"], np.float64)
  with jax.default_matmul_precision("bfloat16"):
    r = np.asarray(jax.jit(rotations.aa_to_rotmat)(setup["aa"]))
    back = np.asarray(jax.jit(lambda x: rotations.rotmat_to_aa(rotations.aa_to_rotmat(x)))(aa))
    pts = np.random.default_rng(2).normal(size=(4, 14, 3))
    rot = np.asarray(rotations.aa_to_rotmat(jnp.asarray([0.3, -1.0, 0.5])), np.float64)
    moved = 1.3 * pts @ rot.T + 0.4
    err = np.asarray(jax.jit(metrics.pa_mpjpe)(pts.astype(np.float32), moved.astype(np.float32)))
  theta = np.linalg.norm(aa, axis=-1, keepdims=True)[..., None]
  k = aa / np.linalg.norm(aa, axis=-1, keepdims=True)
  kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
  z = np.zeros_like(kx)
  kmat = np.stack([z, -kz, ky, kz, z, -kx, -ky, kx, z], -1).reshape(*aa.shape[:-1], 3, 3)
  ref = np.eye(3) + np.sin(theta) * kmat + (1 - np.cos(theta)) * kmat @ kmat
  np.testing.assert_allclose(r, ref, atol=2e-6)
  np.testing.assert_allclose(back, aa, atol=2e-5)
  assert np.all(err < 1e-5)  # a similarity transform aligns exactly
