"""Pose and shape priors for SMPLify: SMPLify's max-mixture GMM prior, the elbow/knee angle
prior and the shape prior (SPIN_SPEC 4.2), plus fitting a GMM to any set of poses by EM.

All priors act on the 69-D body pose (axis-angle of the 23 non-root joints, SMPL's order).

* `load_gmm(path)` reads SMPLify's `gmm_08.pkl` (a dict with `means`, `covars`, `weights`, or an
  sklearn GaussianMixture with `means_`, `covars_` / `covariances_`, `weights_`) without sklearn.
* `fit_gmm(poses, num_components)` fits a full-covariance GMM by EM in JAX, so users can build a
  prior from their own poses (e.g. an AMASS-style npz of `poses`).
* `default_prior()` is the prior shipped for the open model: a GMM fitted to poses drawn from an
  anatomical joint-limit sampler (`fitting/pose_sampler.py`). It is NOT SMPLify's mocap prior:
  it knows joint ranges, not how people usually stand and move.
"""

import dataclasses
import functools
import os
import pickle
import zipfile
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from smpl_jax import files
from smpl_jax.typing import Array

DEFAULT_PRIOR_FILE = "open_pose_prior_gmm08.npz"
_HIGHEST = jax.lax.Precision.HIGHEST


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class GmmPrior:
  """Max-mixture Gaussian prior over a D-dimensional pose (D = 69 for SMPL's body pose).

  E(x) = min_k [ 1/2 |L_k^T (x - mu_k)|^2 + nll_const_k ] with Lambda_k = L_k L_k^T the
  precision of component k and nll_const_k = -log c_k, where
  c_k = w_k / ((2 pi)^(D/2) sqrt(det Sigma_k) / min_j sqrt(det Sigma_j)) (SMPLify-X's "merged"
  prior, equal in value to the original SMPLify chumpy prior). Constants come from float64.
  """

  means: Float[Array, "G D"]
  precision_chol: Float[Array, "G D D"]
  nll_const: Float[Array, " G"]
  weights: Float[Array, " G"]

  @property
  def dim(self) -> int:
    return self.means.shape[-1]


def gmm_from_params(means, covars, weights, dtype=jnp.float32) -> GmmPrior:
  """Builds the prior from mixture parameters (float64 for the constants)."""
  means = np.asarray(means, np.float64)
  covars = np.asarray(covars, np.float64)
  weights = np.asarray(weights, np.float64).reshape(-1)
  g, d = means.shape
  if covars.shape != (g, d, d) or weights.shape != (g,):
    raise ValueError(
      f"GMM arrays disagree: means {means.shape}, covars {covars.shape} (expected {(g, d, d)}), "
      f"weights {weights.shape} (expected {(g,)})."
    )
  if np.any(weights <= 0) or not np.all(np.isfinite(covars)):
    raise ValueError("GMM weights must be positive and covariances finite.")
  precisions = np.linalg.inv(covars)
  precisions = 0.5 * (precisions + np.swapaxes(precisions, -1, -2))
  try:
    chol = np.linalg.cholesky(precisions)
  except np.linalg.LinAlgError as err:
    raise ValueError("GMM covariances are not positive definite.") from err
  half_logdet = 0.5 * np.linalg.slogdet(covars)[1]
  nll_const = -np.log(weights) + 0.5 * d * np.log(2 * np.pi) + (half_logdet - half_logdet.min())
  return GmmPrior(
    means=jnp.asarray(means, dtype),
    precision_chol=jnp.asarray(chol, dtype),
    nll_const=jnp.asarray(nll_const, dtype),
    weights=jnp.asarray(weights / weights.sum(), dtype),
  )


def gmm_mean(prior: GmmPrior) -> Float[Array, " D"]:
  """The mixture's mean pose, sum_k w_k mu_k: the original SMPLify's initial pose."""
  return jnp.einsum("g,gd->d", prior.weights, prior.means, precision=_HIGHEST)


def gmm_component_energies(prior: GmmPrior, pose: Float[Array, " D"]) -> Float[Array, " G"]:
  """1/2 |L_k^T (x - mu_k)|^2 + nll_const_k for every component k."""
  diff = pose[None, :] - prior.means
  proj = jnp.einsum("gde,gd->ge", prior.precision_chol, diff, precision=_HIGHEST)
  return 0.5 * jnp.sum(proj * proj, axis=-1) + prior.nll_const


def gmm_energy(prior: GmmPrior, pose: Float[Array, " D"]) -> Float[Array, ""]:
  """SMPLify's pose prior E_pose(theta): the smallest component energy."""
  return jnp.min(gmm_component_energies(prior, pose))


def gmm_residuals(prior: GmmPrior, pose: Float[Array, " D"]) -> Float[Array, " D+1"]:
  """Residuals r with |r|^2 = E_pose - min_k nll_const_k, for least squares.

  The best component is re-chosen at every evaluation (as in the original SMPLify); the last
  residual, sqrt(nll_const_k - min nll_const), carries that component's constant so that a
  solver comparing |r|^2 across a change of component compares true energies. It has zero
  gradient.
  """
  k = jnp.argmin(gmm_component_energies(prior, pose))
  diff = pose - prior.means[k]
  quad = jnp.sqrt(0.5) * jnp.einsum("de,d->e", prior.precision_chol[k], diff, precision=_HIGHEST)
  const = jnp.sqrt(jnp.maximum(prior.nll_const[k] - jnp.min(prior.nll_const), 0.0))
  return jnp.concatenate([quad, jax.lax.stop_gradient(const)[None]])


# Body-pose indices (axis-angle components of the 69-D body pose) bent the wrong way at the
# elbows and knees, and the sign that makes a wrong bend positive (SPIN's angle prior: full-pose
# indices 55, 58, 12, 15 = left elbow y, right elbow y, left knee x, right knee x).
ANGLE_PRIOR_INDICES = (52, 55, 9, 12)
ANGLE_PRIOR_SIGNS = (1.0, -1.0, -1.0, -1.0)


def angle_prior_residuals(body_pose: Float[Array, " D"]) -> Float[Array, " 4"]:
  """exp(sign * theta) for elbows and knees; E_angle = sum of squares (SMPLify)."""
  idx = jnp.asarray(ANGLE_PRIOR_INDICES)
  return jnp.exp(jnp.asarray(ANGLE_PRIOR_SIGNS, body_pose.dtype) * body_pose[idx])


def angle_energy(body_pose: Float[Array, " D"]) -> Float[Array, ""]:
  return jnp.sum(angle_prior_residuals(body_pose) ** 2)


def shape_energy(betas: Float[Array, " S"]) -> Float[Array, ""]:
  """E_beta = |beta|^2."""
  return jnp.sum(betas**2)


# ---------------------------------------------------------------------------------- loading


class _SklearnGmm:
  """Stand-in for a pickled sklearn GaussianMixture / GMM: keeps its attribute dict."""

  def __init__(self, *args, **kwargs):
    self.state = {}

  def __setstate__(self, state):
    self.state = state if isinstance(state, dict) else {}


def _read_gmm_pickle(path: Path) -> dict:
  from smpl_jax.io import RestrictedUnpickler

  class Unpickler(RestrictedUnpickler):
    def find_class(self, module, name):
      if module.startswith("sklearn.mixture"):
        return _SklearnGmm
      return super().find_class(module, name)

  try:
    with open(path, "rb") as fh:
      raw = Unpickler(fh, encoding="latin1").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
    raise ValueError(f"{path} is not a readable GMM pickle ({err}); it may be truncated.") from err
  if isinstance(raw, _SklearnGmm):
    s = raw.state
    covars = s.get("covars_", s.get("covariances_"))
    return dict(means=s.get("means_"), covars=covars, weights=s.get("weights_"))
  if isinstance(raw, dict):
    return raw
  raise ValueError(f"{path}: expected a dict or an sklearn mixture, got {type(raw).__name__}.")


def load_gmm(path: str | os.PathLike | None = None) -> GmmPrior:
  """Loads SMPLify's `gmm_08.pkl` (dict or sklearn-style), or an npz with means / covars /
  weights; None gives the default open-model prior (see the module docstring)."""
  if path is None:
    path = Path(str(resources.files("fitting") / "data" / DEFAULT_PRIOR_FILE))
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(
      f"GMM prior file {path} does not exist. SMPLify's gmm_08.pkl comes with the SMPLify "
      "code release (smplify.is.tue.mpg.de; SPIN puts it in data/); without it, "
      "fitting.priors.load_gmm() gives the open default prior."
    )
  if path.suffix == ".npz":
    try:
      with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
        params = {k: d[k] for k in ("means", "covars", "weights") if k in d.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
      raise ValueError(f"{path} is not a readable GMM npz ({type(err).__name__}: {err})") from err
  else:
    params = _read_gmm_pickle(path)
  missing = [k for k in ("means", "covars", "weights") if params.get(k) is None]
  if missing:
    raise ValueError(
      f"{path}: GMM file lacks {missing}; a GMM needs means (K, 69), covars (K, 69, 69) and "
      "weights (K,) (fitting.priors.save_gmm writes them)."
    )
  return gmm_from_params(params["means"], params["covars"], params["weights"])


def save_gmm(path: str | os.PathLike, means, covars, weights, **meta) -> None:
  """Writes a GMM npz (float64 means / covars / weights, plus `meta` arrays) atomically."""
  arrays = dict(
    means=np.asarray(means, np.float64),
    covars=np.asarray(covars, np.float64),
    weights=np.asarray(weights, np.float64),
    **{k: np.asarray(v) for k, v in meta.items()},
  )
  files.write_atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


# ----------------------------------------------------------------------------------- EM fit


def _log_gaussians(x, means, covars):
  """log N(x_n | mu_k, Sigma_k) for all n, k: (N, G)."""
  chol = jnp.linalg.cholesky(covars)  # Sigma = C C^T
  diff = x[None, :, :] - means[:, None, :]  # (G, N, D)
  sol = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(diff, 1, 2), lower=True)  # (G, D, N)
  maha = jnp.sum(sol * sol, axis=1)  # (G, N)
  logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
  d = x.shape[1]
  return (-0.5 * (maha + logdet[:, None] + d * jnp.log(2 * jnp.pi))).T


# Jitted here because fit_gmm is itself a program entry point (a whole EM fit), not a step.
@functools.partial(jax.jit, static_argnames=("num_components", "num_iters"))
def _em(x, key, num_components: int, num_iters: int, reg: float):
  n, d = x.shape
  # Initialise with k-means++-style seeding on a random subset, equal weights, data covariance.
  first = jax.random.randint(key, (), 0, n)
  centres = [x[first]]
  keys = jax.random.split(key, num_components)
  for k in range(1, num_components):
    dist = jnp.min(jnp.stack([jnp.sum((x - c) ** 2, axis=1) for c in centres]), axis=0)
    centres.append(x[jax.random.choice(keys[k], n, p=dist / jnp.sum(dist))])
  means = jnp.stack(centres)
  cov0 = jnp.cov(x.T) + reg * jnp.eye(d)
  covars = jnp.broadcast_to(cov0, (num_components, d, d))
  log_w = jnp.full((num_components,), -jnp.log(num_components))

  def step(carry, _):
    means, covars, log_w = carry
    log_p = _log_gaussians(x, means, covars) + log_w  # (N, G)
    log_norm = jax.scipy.special.logsumexp(log_p, axis=1, keepdims=True)
    resp = jnp.exp(log_p - log_norm)
    nk = jnp.sum(resp, axis=0) + 1e-10
    means = (resp.T @ x) / nk[:, None]
    diff = x[None] - means[:, None]
    covars = jnp.einsum("ng,gnd,gne->gde", resp, diff, diff) / nk[:, None, None]
    covars = covars + reg * jnp.eye(d)
    return (means, covars, jnp.log(nk / n)), jnp.mean(log_norm)

  (means, covars, log_w), loglik = jax.lax.scan(step, (means, covars, log_w), None, num_iters)
  return means, covars, jnp.exp(log_w), loglik


def fit_gmm(
  poses: Float[Array, "N D"],
  num_components: int = 8,
  num_iters: int = 200,
  reg: float = 1e-4,
  seed: int = 0,
):
  """Full-covariance GMM by EM (float64 on the host's default device when x64 is enabled,
  float32 otherwise); returns (means, covars, weights, mean log-likelihood per iteration)."""
  x = jnp.asarray(poses)
  if x.ndim != 2 or x.shape[0] < num_components * x.shape[1] // 4:
    raise ValueError(
      f"poses has shape {x.shape}; expected (N, D) with enough samples for {num_components} "
      f"full-covariance components (N >= {num_components * x.shape[-1] // 4})."
    )
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError("poses contain NaN or infinite values.")
  means, covars, weights, loglik = _em(x, jax.random.key(seed), num_components, num_iters, reg)
  return np.asarray(means), np.asarray(covars), np.asarray(weights), np.asarray(loglik)
