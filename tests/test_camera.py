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
    kps.append(np.asarray(camera.perspective_projection(joints, t, 5000.0, jnp.array([112.0, 112.0]))))
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
