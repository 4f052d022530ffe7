"""smpl_jax against smplx (PyTorch) on the same model files; skipped without the bench extra."""

import pickle

import jax
import numpy as np
import pytest

import smpl_jax
from smpl_jax import toy

torch = pytest.importorskip("torch")
smplx = pytest.importorskip("smplx")
scipy_sparse = pytest.importorskip("scipy.sparse")


def _smplx_forward(path, betas, go, body, num_betas, transl=None, pose2rot=True):
  layer = smplx.SMPL(model_path=str(path), num_betas=num_betas, batch_size=len(betas))
  kwargs = {} if transl is None else dict(transl=torch.as_tensor(transl))
  with torch.no_grad():
    out = layer(
      betas=torch.as_tensor(betas),
      global_orient=torch.as_tensor(go),
      body_pose=torch.as_tensor(body),
      pose2rot=pose2rot,
      **kwargs,
    )
  return out.vertices.numpy(), out.joints.numpy()


def _params(n, nb, seed):
  rng = np.random.default_rng(seed)
  return (
    rng.normal(size=(n, nb)).astype(np.float32),
    (rng.normal(size=(n, 3)) * 0.5).astype(np.float32),
    (rng.normal(size=(n, 69)) * 0.5).astype(np.float32),
  )


def test_smpl_sized_pickle_matches_smplx(tmp_path, recwarn):
  arrays = toy.toy_smpl_arrays(seed=11)  # SMPL's sizes, dense pose blend shapes
  arrays["J_regressor"] = scipy_sparse.csc_matrix(arrays["J_regressor"])  # as in SMPL files
  path = tmp_path / "SMPL_NEUTRAL.pkl"
  with open(path, "wb") as fh:
    pickle.dump(arrays, fh, protocol=2)
  betas, go, body = _params(4, 10, 0)
  verts, joints = _smplx_forward(path, betas, go, body, 10)
  model = smpl_jax.load_model(path)
  out = jax.jit(smpl_jax.forward_batch)(model, betas, go, body)
  np.testing.assert_allclose(out.vertices, verts, atol=1e-5)
  np.testing.assert_allclose(out.joints, joints[:, :24], atol=1e-5)
  # smplx's joints 24..44 are its vertex picks: the same points as our SMPL vertex keypoints.
  np.testing.assert_allclose(out.keypoints[:, :21], joints[:, 24:45], atol=1e-5)

  # SPIN's network path: rotation matrices (B, 1, 3, 3) / (B, 23, 3, 3), and a translation.
  go_m = np.asarray(smpl_jax.rotations.aa_to_rotmat(go))[:, None]
  body_m = np.asarray(smpl_jax.rotations.aa_to_rotmat(body.reshape(-1, 23, 3)))
  transl = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
  verts, joints = _smplx_forward(path, betas, go_m, body_m, 10, transl=transl, pose2rot=False)
  out = jax.jit(smpl_jax.forward_batch)(model, betas, go_m, body_m, transl)
  np.testing.assert_allclose(out.vertices, verts, atol=1e-5)
  np.testing.assert_allclose(out.keypoints[:, :21], joints[:, 24:45], atol=1e-5)


def test_open_model_in_smplx_layout_matches_smplx(tmp_path, recwarn):
  # The full-resolution mesh: smplx indexes SMPL vertex ids (< 6890) for its extra joints.
  m = smpl_jax.load_open_model("full")
  path = tmp_path / "open_smpl_layout.pkl"  # smplx.SMPL reads pickles only
  nv = m.num_vertices
  arrays = dict(
    v_template=np.asarray(m.v_template),
    shapedirs=np.asarray(m.shapedirs),
    posedirs=np.zeros((nv, 3, 207), np.float32),
    J_regressor=np.asarray(m.J_regressor),
    weights=np.asarray(m.weights),
    f=np.asarray(m.faces),
    kintree_table=np.stack([np.asarray(m.parents), np.arange(24)]),
  )
  with open(path, "wb") as fh:
    pickle.dump(arrays, fh, protocol=2)
  # smplx caps num_betas at 10 for files with fewer than SMPL v1.1's 300 components.
  betas, go, body = _params(3, 10, 1)
  verts, joints = _smplx_forward(path, betas, go, body, 10)
  out = jax.jit(smpl_jax.forward_batch)(m, betas, go, body)
  np.testing.assert_allclose(out.vertices, verts, atol=1e-5)
  np.testing.assert_allclose(out.joints, joints[:, :24], atol=1e-5)
