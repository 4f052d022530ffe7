import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smpl_jax import rotations as rot


def random_aa(n, seed=0, max_angle=np.pi):
  rng = np.random.default_rng(seed)
  axis = rng.normal(size=(n, 3))
  axis /= np.linalg.norm(axis, axis=1, keepdims=True)
  return (axis * rng.uniform(0, max_angle, (n, 1))).astype(np.float32)


def scipy_free_rodrigues(aa):
  out = []
  for r in np.asarray(aa, np.float64):
    t = np.linalg.norm(r)
    if t == 0:
      out.append(np.eye(3))
      continue
    k = r / t
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    out.append(np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx)
  return np.stack(out)


def test_aa_to_rotmat_matches_textbook_and_is_orthonormal():
  aa = random_aa(200)
  r = jax.jit(rot.aa_to_rotmat)(aa)
  np.testing.assert_allclose(r, scipy_free_rodrigues(aa), atol=2e-6)
  np.testing.assert_allclose(
    r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=2e-6
  )
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=2e-6)


def test_gradient_at_zero_is_exact_and_finite():
  # d/dr sum(R @ a) at r = 0 is cross-product derivative: sum([r]x a) = sum over rows of r x a.
  a = jnp.array([1.0, 2.0, 3.0])
  f = lambda r: jnp.sum(rot.aa_to_rotmat(r) @ a)
  g = jax.jit(jax.grad(f))(jnp.zeros(3))
  # sum(r x a) = r . (a x (1,1,1)); gradient = a x 1 = (2-3, 3-1, 1-2)
  np.testing.assert_allclose(g, np.cross(np.asarray(a), np.ones(3)), atol=1e-7)
  for fn in (rot.aa_to_quat, rot.rotmat_to_aa, rot.quat_to_aa, rot.aa_to_rot6d):
    x = (
      jnp.eye(3)
      if fn is rot.rotmat_to_aa
      else jnp.array([1.0, 0, 0, 0])
      if fn is rot.quat_to_aa
      else jnp.zeros(3)
    )
    grad = jax.jit(jax.grad(lambda v, fn=fn: jnp.sum(fn(v) ** 2 + fn(v))))(x)
    assert np.all(np.isfinite(grad)), fn.__name__


def test_aa_round_trip_including_near_zero_and_near_pi():
  aa = np.concatenate(
    [
      random_aa(100, 1),
      random_aa(20, 2, max_angle=1e-4),
      random_aa(20, 3) / np.linalg.norm(random_aa(20, 3), axis=1, keepdims=True) * (np.pi - 1e-3),
    ]
  ).astype(np.float32)
  back = jax.jit(lambda a: rot.rotmat_to_aa(rot.aa_to_rotmat(a)))(aa)
  # Compare as rotations (near pi, aa and -aa are the same rotation).
  np.testing.assert_allclose(scipy_free_rodrigues(back), scipy_free_rodrigues(aa), atol=2e-5)
  small = np.linalg.norm(aa, axis=1) < np.pi - 0.01
  np.testing.assert_allclose(np.asarray(back)[small], aa[small], atol=2e-5)


def test_exact_pi_rotation_is_recovered():
  r = np.diag([1.0, -1.0, -1.0]).astype(np.float32)  # pi about x
  aa = np.asarray(jax.jit(rot.rotmat_to_aa)(r))
  np.testing.assert_allclose(np.abs(aa), [np.pi, 0, 0], atol=1e-5)


def test_quaternion_round_trips():
  aa = random_aa(100, 4)
  q = jax.jit(rot.aa_to_quat)(aa)
  np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(
    jax.jit(rot.quat_to_rotmat)(q), jax.jit(rot.aa_to_rotmat)(aa), atol=2e-6
  )
  q2 = jax.jit(rot.rotmat_to_quat)(rot.aa_to_rotmat(aa))
  np.testing.assert_allclose(np.abs(np.sum(q * q2, -1)), 1.0, atol=1e-5)


def test_6d_is_spins_row_major_convention():
  r = np.asarray(rot.aa_to_rotmat(random_aa(10, 5)))
  six = np.asarray(jax.jit(rot.rotmat_to_rot6d)(r))
  # SPIN: x.view(-1, 3, 2) -> columns a1 = (x0, x2, x4), a2 = (x1, x3, x5) are R's first columns.
  np.testing.assert_allclose(six[:, 0::2], r[:, :, 0], atol=1e-7)
  np.testing.assert_allclose(six[:, 1::2], r[:, :, 1], atol=1e-7)
  np.testing.assert_allclose(jax.jit(rot.rot6d_to_rotmat)(six), r, atol=2e-6)


def test_6d_gram_schmidt_of_arbitrary_input_is_a_rotation():
  x = np.random.default_rng(6).normal(size=(50, 6)).astype(np.float32)
  r = np.asarray(jax.jit(rot.rot6d_to_rotmat)(x))
  np.testing.assert_allclose(
    r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=2e-6
  )
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=2e-6)
  a1 = x[:, 0::2] / np.linalg.norm(x[:, 0::2], axis=1, keepdims=True)
  np.testing.assert_allclose(r[:, :, 0], a1, atol=2e-6)


def test_geodesic_angle_gradient_is_finite_at_zero():
  r1 = rot.aa_to_rotmat(jnp.array([0.3, -0.2, 0.1]))
  g = jax.jit(jax.grad(lambda a: rot.geodesic_angle(r1, r1 @ rot.aa_to_rotmat(a))))(jnp.zeros(3))
  assert np.all(np.isfinite(g))


def test_degenerate_6d_input_gives_a_finite_matrix():
  assert np.all(np.isfinite(jax.jit(rot.rot6d_to_rotmat)(jnp.zeros(6))))


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.5, np.pi - 1e-4])
def test_geodesic_angle(angle):
  r1 = rot.aa_to_rotmat(jnp.array([0.3, -0.2, 0.1]))
  r2 = r1 @ rot.aa_to_rotmat(jnp.array([0.0, 0.0, angle]))
  np.testing.assert_allclose(
    jax.jit(rot.geodesic_angle)(r1, r2), angle, atol=5e-4 if angle > 3 else 1e-5
  )
