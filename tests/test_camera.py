import jax
import jax.numpy as jnp
import numpy as np

from smpl_jax import camera


def _scene(seed=0, n=24):
  rng = np.random.default_rng(seed)
  joints = rng.normal(scale=0.4, size=(n, 3)).astype(np.float32)
  t = np.array([0.1, -0.2, 40.0], np.float32)  # ~ SPIN depth at focal 5000 on a 224 crop
  return joints, t


def test_projection_matches_pinhole_formula():
  joints, t = _scene()
  center = np.array([112.0, 112.0], np.float32)
  px = jax.jit(camera.perspective_projection)(joints, t, 5000.0, center)
  cam = joints + t
  np.testing.assert_allclose(px, 5000.0 * cam[:, :2] / cam[:, 2:] + center, rtol=1e-5)


def test_estimate_translation_recovers_exact_translation_batched():
  js, ts, kps = [], [], []
  for seed in range(4):
    joints, t = _scene(seed)
    t = t + np.array([seed * 0.05, 0.0, seed * 3.0], np.float32)
    js.append(joints)
    ts.append(t)
    kps.append(
      np.asarray(camera.perspective_projection(joints, t, 5000.0, jnp.array([112.0, 112.0])))
    )
  conf = np.ones((4, 24), np.float32)
  conf[1, :5] = 0.0  # dropped joints do not matter for exact data
  est = jax.jit(camera.estimate_translation)(np.stack(js), np.stack(kps), conf)
  np.testing.assert_allclose(est, np.stack(ts), rtol=2e-3, atol=2e-3)


def test_estimate_translation_is_nan_without_confident_joints():
  joints, t = _scene()
  kp = np.asarray(camera.perspective_projection(joints, t, 5000.0, jnp.array([112.0, 112.0])))
  est = jax.jit(camera.estimate_translation)(joints, kp, np.zeros(24, np.float32))
  assert np.all(np.isnan(est))


def test_weak_perspective_agrees_with_perspective_at_body_depth():
  cam = np.array([0.9, 0.05, -0.1], np.float32)
  t = np.asarray(camera.weak_perspective_to_translation(cam))
  np.testing.assert_allclose(t[:2], cam[1:])
  np.testing.assert_allclose(t[2], 2 * 5000.0 / (224 * 0.9), rtol=1e-6)
  # A point at the body's depth projects (in [-1, 1] units) as s (X + t_xy).
  x = np.array([[0.2, -0.3, 0.0]], np.float32)
  px = camera.perspective_projection(x, t, 5000.0) / 112.0
  np.testing.assert_allclose(px[0], cam[0] * (x[0, :2] + cam[1:]), rtol=1e-4)


def spin_estimate_translation_np(s3d, j2d, conf, focal=5000.0, img=224.0):
  """SPIN's estimate_translation_np (utils/geometry.py), rewritten in plain numpy."""
  f = np.array([focal, focal])
  center = np.array([img / 2.0, img / 2.0])
  z = np.reshape(np.tile(s3d[:, 2], (2, 1)).T, -1)
  xy = np.reshape(s3d[:, 0:2], -1)
  o = np.tile(center, len(s3d))
  ff = np.tile(f, len(s3d))
  w = np.sqrt(np.reshape(np.tile(conf, (2, 1)).T, -1))
  q = np.array(
    [
      ff * np.tile(np.array([1, 0]), len(s3d)),
      ff * np.tile(np.array([0, 1]), len(s3d)),
      o - np.reshape(j2d, -1),
    ]
  ).T
  c = (np.reshape(j2d, -1) - o) * z - ff * xy
  w_diag = np.diag(w)
  q = w_diag @ q
  c = w_diag @ c
  return np.linalg.solve(q.T @ q, q.T @ c)


def test_estimate_translation_matches_spin_on_noisy_weighted_data():
  rng = np.random.default_rng(3)
  for _ in range(5):
    joints, t = _scene(int(rng.integers(100)))
    kp = np.asarray(camera.perspective_projection(joints, t, 5000.0, jnp.array([112.0, 112.0])))
    kp = kp + rng.normal(scale=3.0, size=kp.shape)
    conf = rng.uniform(0.05, 1.0, 24).astype(np.float32)
    ours = jax.jit(camera.estimate_translation)(joints, kp.astype(np.float32), conf)
    ref = spin_estimate_translation_np(joints.astype(np.float64), kp, conf.astype(np.float64))
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)
