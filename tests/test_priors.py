import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fitting import pose_sampler, priors


def _random_gmm(g=3, d=5, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(g, d))
  a = rng.normal(size=(g, d, d)) * 0.3
  covars = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(d)
  weights = rng.random(g) + 0.2
  return means, covars, weights / weights.sum()


def test_energy_is_smplifys_max_mixture_formula():
  means, covars, weights = _random_gmm()
  prior = priors.gmm_from_params(means, covars, weights)
  x = np.random.default_rng(1).normal(size=5)
  sqrdets = np.sqrt(np.linalg.det(covars))
  nll_weights = weights / ((2 * np.pi) ** (5 / 2) * (sqrdets / sqrdets.min()))
  ref = min(
    0.5 * (x - m) @ np.linalg.inv(c) @ (x - m) - np.log(w)
    for m, c, w in zip(means, covars, nll_weights)
  )
  np.testing.assert_allclose(jax.jit(priors.gmm_energy)(prior, x), ref, rtol=1e-5)
  # The least-squares residuals give the same energy, up to the chosen component's constant.
  # Least-squares residuals: |r|^2 + min_k const = energy, whichever component is chosen, so
  # a solver comparing |r|^2 compares true energies across a change of component.
  for y in np.random.default_rng(7).normal(scale=2.0, size=(20, 5)):
    r = jax.jit(priors.gmm_residuals)(prior, y)
    np.testing.assert_allclose(
      np.sum(np.asarray(r) ** 2) + np.min(prior.nll_const), priors.gmm_energy(prior, y), rtol=1e-5
    )


def test_energy_is_lowest_near_a_component_mean():
  means, covars, weights = _random_gmm(seed=2)
  prior = priors.gmm_from_params(means, covars, np.ones(3) / 3)
  e = jax.jit(priors.gmm_energy)
  at_mean = float(e(prior, means[0]))
  for delta in np.random.default_rng(3).normal(size=(20, 5)):
    assert float(e(prior, means[0] + delta)) > at_mean - 1e-4


class _FakeSklearnGmm:
  pass


def test_load_gmm_from_dict_and_sklearn_style_pickles(tmp_path, monkeypatch):
  import sys
  import types

  means, covars, weights = _random_gmm(g=8, d=69, seed=4)
  (tmp_path / "gmm_08.pkl").write_bytes(
    pickle.dumps(dict(means=means, covars=covars, weights=weights), protocol=2)
  )
  mod = types.ModuleType("sklearn.mixture.gmm")
  _FakeSklearnGmm.__module__, _FakeSklearnGmm.__qualname__ = "sklearn.mixture.gmm", "GMM"
  mod.GMM = _FakeSklearnGmm
  for parent in ("sklearn", "sklearn.mixture"):
    monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
  monkeypatch.setitem(sys.modules, "sklearn.mixture.gmm", mod)
  obj = _FakeSklearnGmm()
  obj.means_, obj.covars_, obj.weights_ = means, covars, weights
  (tmp_path / "sk.pkl").write_bytes(pickle.dumps(obj, protocol=2))
  a = priors.load_gmm(tmp_path / "gmm_08.pkl")
  b = priors.load_gmm(tmp_path / "sk.pkl")
  np.testing.assert_allclose(a.precision_chol, b.precision_chol)
  np.testing.assert_allclose(a.nll_const, b.nll_const)
  with pytest.raises(FileNotFoundError, match="gmm_08.pkl comes with the SMPLify"):
    priors.load_gmm(tmp_path / "missing.pkl")


def test_em_recovers_a_known_mixture():
  rng = np.random.default_rng(5)
  true_means = np.array([[-3.0, 0.0, 1.0], [3.0, 1.0, -1.0]])
  x = np.concatenate(
    [
      rng.normal(size=(3000, 3)) * 0.5 + true_means[0],
      rng.normal(size=(1000, 3)) * 0.3 + true_means[1],
    ]
  ).astype(np.float32)
  means, covars, weights, loglik = priors.fit_gmm(x, 2, num_iters=50)
  order = np.argsort(means[:, 0])
  np.testing.assert_allclose(means[order], true_means, atol=0.1)
  np.testing.assert_allclose(weights[order], [0.75, 0.25], atol=0.02)
  assert loglik[-1] > loglik[0]


def test_angle_prior_penalises_wrong_way_bends():
  # SPIN's angle prior reads full-pose (72) indices 55, 58, 12, 15: left elbow y, right elbow y,
  # left knee x, right knee x; the body pose drops the 3 root entries.
  natural = np.zeros(69, np.float32)
  natural[[55 - 3, 58 - 3, 12 - 3, 15 - 3]] = [-1.0, 1.0, 1.0, 1.0]  # natural flexion
  # Each term is exp(+-1)^2: the wrong-way bend costs e^4 ~ 55 times more.
  assert float(priors.angle_energy(natural)) < float(priors.angle_energy(-natural)) / 50


def test_default_open_prior_prefers_plausible_poses():
  prior = priors.load_gmm()
  assert prior.dim == 69
  e = jax.jit(jax.vmap(lambda x: priors.gmm_energy(prior, x)))
  plausible = pose_sampler.sample_body_poses(200, seed=11).astype(np.float32)
  extreme = np.full((1, 69), 2.0, np.float32)
  assert float(jnp.median(e(plausible))) < float(e(extreme)[0]) / 10
  assert np.all(pose_sampler.joint_limits()[:, :, 0] <= pose_sampler.joint_limits()[:, :, 1])
