"""Shared test setup: persistent compilation cache, small models, a plain-numpy reference SMPL."""

import os
from pathlib import Path

import jax

# Persist XLA executables across test runs (CI re-runs compile nothing it compiled before).
_CACHE = os.environ.get(
  "SPIN_JAX_TEST_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "jax")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import smpl_jax  # noqa: E402
from smpl_jax import toy  # noqa: E402


@pytest.fixture(scope="session")
def lowres_model():
  return smpl_jax.load_open_model("low")


@pytest.fixture(scope="session")
def toy_arrays():
  """A small synthetic SMPL-layout model with dense pose blend shapes (V = 400)."""
  return toy.toy_smpl_arrays(num_vertices=400, num_faces=600, num_betas=10, seed=3)


@pytest.fixture(scope="session")
def toy_model_keypoints(toy_arrays, tmp_path_factory):
  """The toy model with SPIN-style J_regressor_extra / J_regressor_h36m stand-ins beside it."""
  path = tmp_path_factory.mktemp("toy_kp") / "toy_smpl.npz"
  np.savez(path, **toy_arrays)
  for name, reg in toy.toy_extra_regressors(num_vertices=400).items():
    np.save(path.parent / f"{name}.npy", reg)
  with pytest.warns(UserWarning, match="cannot define"):  # the SMPL vertex picks need 6890 V
    return smpl_jax.load_model(path)


@pytest.fixture(scope="session")
def toy_model(toy_arrays, tmp_path_factory):
  path = tmp_path_factory.mktemp("toy") / "toy_smpl.npz"
  np.savez(path, **toy_arrays)
  with pytest.warns(UserWarning, match="cannot define"):  # no SMPL mesh, no SPIN regressors
    return smpl_jax.load_model(path)


@pytest.fixture(scope="session")
def tiny_train_data(tmp_path_factory):
  """The trainer tests' synthetic set (16 train / 4 validation people at 64 px, low-res open
  model), built once per session: the tests that train share it and its compiled shapes."""
  from spin_jax.data import build

  d = tmp_path_factory.mktemp("train_tfds")
  build.main(
    ["synthetic", "--data_dir", str(d), "--name", "tiny", "--num_train", "16"]
    + ["--num_validation", "4", "--num_test", "0", "--resolution", "64", "--workers", "1"]
    + ["--model", str(smpl_jax.open_model_path("low"))]
  )
  return d
