"""Loaders on small files written here in each real format, and every bad input."""

import pickle
import sys
import types

import jax
import numpy as np
import numpy_smpl
import pytest

import smpl_jax
from smpl_jax import joints as joints_lib
from smpl_jax import toy

# --------------------------------------------------------------- writing SMPL-style pickles


class _Ch:
  """Stub with chumpy.ch.Ch's pickled shape: an object whose state dict holds 'x'."""

  def __init__(self, x):
    self.x = x
    self._dirty_vars = set()  # chumpy objects carry bookkeeping besides 'x'


class _CscMatrix:
  """Stub with the pickled shape of an old scipy.sparse.csc.csc_matrix."""

  def __init__(self, dense):
    cols = [np.flatnonzero(dense[:, j]) for j in range(dense.shape[1])]
    self.data = np.concatenate([dense[c, j] for j, c in enumerate(cols)])
    self.indices = np.concatenate(cols).astype(np.int32)
    self.indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
    self._shape = dense.shape
    self.maxprint = 50


@pytest.fixture
def smpl_style_modules(monkeypatch):
  """Registers fake `chumpy.ch` and `scipy.sparse.csc` modules so pickle names them as in SMPL
  files; the loader under test never imports them."""
  chumpy = types.ModuleType("chumpy")
  ch = types.ModuleType("chumpy.ch")
  _Ch.__module__, _Ch.__qualname__, _Ch.__name__ = "chumpy.ch", "Ch", "Ch"
  ch.Ch = _Ch
  csc = types.ModuleType("scipy.sparse.csc")
  _CscMatrix.__module__, _CscMatrix.__qualname__, _CscMatrix.__name__ = (
    "scipy.sparse.csc",
    "csc_matrix",
    "csc_matrix",
  )
  csc.csc_matrix = _CscMatrix
  monkeypatch.setitem(sys.modules, "chumpy", chumpy)
  monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
  monkeypatch.setitem(sys.modules, "scipy.sparse.csc", csc)


def write_smpl_pkl(path, arrays):
  """An SMPL-style pickle: chumpy arrays, a sparse csc J_regressor, extra unused keys."""
  data = dict(
    v_template=_Ch(arrays["v_template"]),
    shapedirs=_Ch(arrays["shapedirs"]),
    posedirs=arrays["posedirs"],
    J_regressor=_CscMatrix(arrays["J_regressor"]),
    weights=_Ch(arrays["weights"]),
    kintree_table=arrays["kintree_table"].astype(np.uint32),
    f=arrays["f"].astype(np.uint32),
    J=_Ch(arrays["J_regressor"] @ arrays["v_template"]),
    bs_style="lbs",
    bs_type="lrotmin",
  )
  with open(path, "wb") as fh:
    pickle.dump(data, fh, protocol=2)


@pytest.fixture(scope="module")
def small_arrays():
  return toy.toy_smpl_arrays(num_vertices=300, num_faces=500, num_betas=10, seed=5)


def _forward_close(model, arrays, nb=10):
  rng = np.random.default_rng(0)
  betas = rng.normal(size=nb).astype(np.float32)
  pose = (rng.normal(size=(24, 3)) * 0.4).astype(np.float32)
  out = jax.jit(smpl_jax.forward)(model, betas, pose[0], pose[1:])
  verts, joints, _ = numpy_smpl.forward(arrays, model.parents, betas, pose)
  np.testing.assert_allclose(out.vertices, verts, atol=2e-5)
  np.testing.assert_allclose(out.joints, joints, atol=2e-5)


def test_chumpy_pickle_with_sparse_regressor_loads_without_chumpy(
  tmp_path, small_arrays, smpl_style_modules
):
  path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
  write_smpl_pkl(path, small_arrays)
  sys.modules.pop("chumpy.ch")  # the loader must not need chumpy
  sys.modules.pop("chumpy")
  raw = smpl_jax.read_smpl_pkl(path)
  assert isinstance(raw["v_template"], np.ndarray)
  np.testing.assert_array_equal(raw["J_regressor"], small_arrays["J_regressor"])
  with pytest.warns(UserWarning, match="cannot define"):
    model = smpl_jax.load_model(path)
  assert model.parents == joints_lib.SMPL_PARENTS and model.has_pose_blendshapes
  _forward_close(model, small_arrays)


def test_v11_style_300_betas(tmp_path, smpl_style_modules):
  arrays = toy.toy_smpl_arrays(num_vertices=300, num_faces=500, num_betas=300, seed=6)
  path = tmp_path / "SMPL_MALE.pkl"
  write_smpl_pkl(path, arrays)
  with pytest.warns(UserWarning):
    model = smpl_jax.load_model(tmp_path, gender="male")  # directory + gender, smplx naming
  assert model.num_betas == 300
  _forward_close(model, arrays, nb=300)
  _forward_close(model, arrays, nb=10)  # the first 10 of 300
  with pytest.warns(UserWarning):
    ten = smpl_jax.load_model(path, num_betas=10)
  assert ten.num_betas == 10


def test_smplx_style_npz_and_spin_regressors_beside_the_file(tmp_path):
  arrays = toy.toy_smpl_arrays(seed=7)  # SMPL's 6890 vertices: the vertex picks apply
  smpl_dir = tmp_path / "smpl"
  smpl_dir.mkdir()
  np.savez(smpl_dir / "SMPL_NEUTRAL.npz", **arrays)
  extra = toy.toy_extra_regressors()
  np.save(tmp_path / "J_regressor_extra.npy", extra["J_regressor_extra"])  # SPIN's data/ layout
  np.save(tmp_path / "J_regressor_h36m.npy", extra["J_regressor_h36m"])
  model = smpl_jax.load_model(smpl_dir)  # no warning: every SPIN joint is defined
  assert all(model.joint_set("spin49").defined)
  assert len(model.joint_set("h36m17")) == 17
  out = jax.jit(smpl_jax.forward)(model, body_pose=np.full(69, 0.2, np.float32))
  reg = np.concatenate(
    [
      np.eye(6890)[[v for _, v in joints_lib.SMPL_VERTEX_KEYPOINTS]],
      extra["J_regressor_extra"],
      extra["J_regressor_h36m"],
    ]
  )
  pose = np.concatenate([np.zeros((1, 3)), np.full((23, 3), 0.2)])
  _, _, kps = numpy_smpl.forward(arrays, model.parents, np.zeros(0), pose, keypoint_regressor=reg)
  np.testing.assert_allclose(out.keypoints, kps, atol=2e-5)
  np.testing.assert_allclose(out.joint_sets["h36m17"], kps[-17:], atol=2e-5)
  # SPIN's 'Neck (LSP)' (row 37) is J_regressor_extra row 2; 'OP Neck' is the kinematic neck.
  np.testing.assert_allclose(out.joint_sets["spin49"][37], kps[21 + 2], atol=2e-5)
  np.testing.assert_allclose(out.joint_sets["spin49"][1], out.joints[12], atol=1e-7)


def test_project_npz_round_trip(tmp_path, lowres_model):
  arrays = numpy_smpl.read_project_npz(smpl_jax.open_model_path("low"))
  path = tmp_path / "copy.npz"
  smpl_jax.io.save_project_npz(
    path,
    v_template=arrays["v_template"],
    shapedirs=arrays["shapedirs"],
    posedirs=None,
    J_regressor=arrays["J_regressor"],
    weights=arrays["weights"],
    faces=arrays["f"],
    parents=lowres_model.parents,
    joint_names=lowres_model.joint_names,
    keypoint_regressor=arrays["keypoint_regressor"],
    keypoint_names=lowres_model.keypoint_names,
    joint_sets={
      js.name: dict(
        names=js.names,
        flip_perm=js.flip_perm,
        sources=[_source_name(lowres_model, s) for s in js.sources],
      )
      for js in lowres_model.joint_sets
    },
    meta={"note": "test"},
  )
  copy = smpl_jax.load_model(path)
  assert copy.joint_sets == lowres_model.joint_sets
  np.testing.assert_array_equal(copy.v_template, lowres_model.v_template)


def _source_name(model, s):
  return (
    f"joint:{model.joint_names[s]}"
    if s < model.num_joints
    else f"keypoint:{model.keypoint_names[s - model.num_joints]}"
  )


# -------------------------------------------------------------------------------- bad input


def test_missing_file_says_where_smpl_comes_from(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    smpl_jax.load_model(tmp_path / "SMPL_NEUTRAL.pkl")
  msg = str(err.value)
  assert "smpl.is.tue.mpg.de" in msg and "smplify" in msg.lower()
  assert "load_model()" in msg and "open body model" in msg
  with pytest.raises(FileNotFoundError, match="SMPL_FEMALE"):
    smpl_jax.load_model(tmp_path, gender="female")


@pytest.mark.parametrize("fmt", ["pkl", "npz"])
def test_truncated_file_is_a_clear_error(tmp_path, small_arrays, smpl_style_modules, fmt):
  path = tmp_path / f"model.{fmt}"
  if fmt == "pkl":
    write_smpl_pkl(path, small_arrays)
  else:
    np.savez(path, **small_arrays)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="truncated or corrupt"):
    smpl_jax.load_model(path)


def test_garbage_file_is_a_clear_error(tmp_path):
  path = tmp_path / "model.bin"
  path.write_bytes(b"not a model at all")
  with pytest.raises(ValueError, match="neither a pickle"):
    smpl_jax.load_model(path)


def test_pickle_with_other_classes_is_refused(tmp_path):
  path = tmp_path / "evil.pkl"

  class Evil:
    def __reduce__(self):
      import os

      return (os.system, ("echo pwned",))

  path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
  with pytest.raises(ValueError, match="refusing to unpickle"):
    smpl_jax.load_model(path)


@pytest.mark.parametrize(
  "key,bad_shape,match",
  [
    ("shapedirs", (300, 3), "shapedirs has shape"),
    ("weights", (300, 23), r"weights has shape \(300, 23\), expected \(300, 24\)"),
    ("J_regressor", (24, 299), "J_regressor has shape"),
    ("posedirs", (300, 3, 10), "posedirs has shape"),
  ],
)
def test_wrong_array_shapes_name_the_array(tmp_path, small_arrays, key, bad_shape, match):
  arrays = dict(small_arrays)
  arrays[key] = np.ones(bad_shape)
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=match):
    smpl_jax.load_model(path)


def test_missing_key_and_non_finite_values(tmp_path, small_arrays):
  arrays = dict(small_arrays)
  del arrays["weights"]
  np.savez(tmp_path / "a.npz", **arrays)
  with pytest.raises(ValueError, match=r"missing \['weights'\]"):
    smpl_jax.load_model(tmp_path / "a.npz")
  arrays = dict(small_arrays)
  arrays["v_template"] = arrays["v_template"].copy()
  arrays["v_template"][3, 1] = np.nan
  np.savez(tmp_path / "b.npz", **arrays)
  with pytest.raises(ValueError, match="NaN"):
    smpl_jax.load_model(tmp_path / "b.npz")


def test_num_betas_beyond_the_file_and_bad_regressor(tmp_path, small_arrays):
  np.savez(tmp_path / "m.npz", **small_arrays)
  with pytest.raises(ValueError, match="num_betas=20 but"):
    smpl_jax.load_model(tmp_path / "m.npz", num_betas=20)
  np.save(tmp_path / "extra.npy", np.zeros((9, 6890)))
  with pytest.raises(
    ValueError, match=r"J_regressor_extra has shape \(9, 6890\), expected \(9, 300\)"
  ):
    smpl_jax.load_model(tmp_path / "m.npz", joint_regressor_extra=tmp_path / "extra.npy")


def test_regressor_found_beside_a_model_of_another_size_is_ignored(tmp_path, small_arrays):
  np.savez(tmp_path / "m.npz", **small_arrays)
  np.save(tmp_path / "J_regressor_extra.npy", np.zeros((9, 6890)))  # for SMPL, not this model
  with pytest.warns(UserWarning) as record:
    model = smpl_jax.load_model(tmp_path / "m.npz")
  assert any("ignoring" in str(w.message) for w in record)
  assert "lsp_neck" not in model.keypoint_names


def test_protocol5_pickle_of_plain_arrays_loads(tmp_path, small_arrays):
  path = tmp_path / "resaved.pkl"  # a chumpy-free SMPL pickle re-saved with a modern pickler
  path.write_bytes(pickle.dumps(dict(small_arrays), protocol=5))
  with pytest.warns(UserWarning, match="cannot define"):
    model = smpl_jax.load_model(path)
  _forward_close(model, small_arrays)


def test_npz_with_a_pickled_sparse_regressor_names_the_key(tmp_path, small_arrays):
  scipy_sparse = pytest.importorskip("scipy.sparse")
  arrays = dict(small_arrays, J_regressor=scipy_sparse.csc_matrix(small_arrays["J_regressor"]))
  np.savez(tmp_path / "m.npz", **arrays)  # stores the sparse matrix as a pickled object array
  with pytest.raises(ValueError, match=r"\['J_regressor'\] are pickled object arrays"):
    smpl_jax.load_model(tmp_path / "m.npz")


def test_negative_num_betas_is_an_error(tmp_path, small_arrays):
  np.savez(tmp_path / "m.npz", **small_arrays)
  with pytest.raises(ValueError, match="0 <= num_betas"):
    smpl_jax.load_model(tmp_path / "m.npz", num_betas=-1)
