import jax
import jax.numpy as jnp
import numpy as np
import numpy_smpl
import pytest

import smpl_jax
from smpl_jax import rotations


def _params(model, n, seed=0, scale=0.4):
  rng = np.random.default_rng(seed)
  nj = model.num_joints
  return dict(
    betas=rng.normal(size=(n, min(10, model.num_betas))).astype(np.float32),
    global_orient=(rng.normal(size=(n, 3)) * scale).astype(np.float32),
    body_pose=(rng.normal(size=(n, (nj - 1) * 3)) * scale).astype(np.float32),
    transl=rng.normal(size=(n, 3)).astype(np.float32),
  )


@pytest.fixture(scope="module")
def lowres_arrays():
  return numpy_smpl.read_project_npz(smpl_jax.open_model_path("low"))


def _check_against_reference(model, arrays, kp_reg, n=3, atol=2e-5):
  p = _params(model, n)
  out = jax.jit(smpl_jax.forward_batch)(
    model, p["betas"], p["global_orient"], p["body_pose"], p["transl"]
  )
  for i in range(n):
    pose = np.concatenate([p["global_orient"][i], p["body_pose"][i]]).reshape(-1, 3)
    verts, joints, kps = numpy_smpl.forward(
      arrays, model.parents, p["betas"][i], pose, p["transl"][i], kp_reg
    )
    np.testing.assert_allclose(out.vertices[i], verts, atol=atol)
    np.testing.assert_allclose(out.joints[i], joints, atol=atol)
    np.testing.assert_allclose(out.keypoints[i], kps, atol=atol)


def test_open_lowres_matches_numpy_reference(lowres_model, lowres_arrays):
  _check_against_reference(lowres_model, lowres_arrays, lowres_arrays["keypoint_regressor"])


def test_toy_with_pose_blendshapes_matches_numpy_reference(toy_model, toy_arrays):
  assert toy_model.has_pose_blendshapes
  no_keypoints = np.zeros((0, toy_model.num_vertices))
  _check_against_reference(toy_model, toy_arrays, no_keypoints)


def test_zero_pose_and_shape_give_the_template(lowres_model, toy_model, toy_arrays):
  for model in (lowres_model, toy_model):
    out = jax.jit(smpl_jax.forward)(model)
    np.testing.assert_allclose(out.vertices, model.v_template, atol=1e-6)
    np.testing.assert_allclose(out.joints, model.J_regressor @ model.v_template, atol=1e-5)


def test_global_rotation_rotates_the_mesh_about_the_root(lowres_model):
  p = _params(lowres_model, 1, seed=1)
  betas, body = p["betas"][0], p["body_pose"][0]
  aa = np.array([0.3, -1.2, 0.5], np.float32)
  f = jax.jit(smpl_jax.forward)
  base = f(lowres_model, betas, None, body)
  turned = f(lowres_model, betas, aa, body)
  root = np.asarray(base.joints[0])
  r = np.asarray(rotations.aa_to_rotmat(aa))
  np.testing.assert_allclose(
    turned.vertices, (np.asarray(base.vertices) - root) @ r.T + root, atol=1e-5
  )
  np.testing.assert_allclose(
    turned.keypoints, (np.asarray(base.keypoints) - root) @ r.T + root, atol=1e-5
  )


def test_rotation_matrices_and_axis_angle_give_the_same_body(toy_model):
  p = _params(toy_model, 1, seed=2)
  f = jax.jit(smpl_jax.forward)
  a = f(toy_model, p["betas"][0], p["global_orient"][0], p["body_pose"][0])
  go = rotations.aa_to_rotmat(p["global_orient"][0])[None]  # (1, 3, 3), as smplx takes it
  body = rotations.aa_to_rotmat(p["body_pose"][0].reshape(-1, 3))
  b = f(toy_model, p["betas"][0], go, body)
  np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)


def test_vmap_equals_a_loop(toy_model):
  p = _params(toy_model, 4, seed=3)
  batched = jax.jit(smpl_jax.forward_batch)(
    toy_model, p["betas"], p["global_orient"], p["body_pose"], p["transl"]
  )
  single = jax.jit(smpl_jax.forward)
  for i in range(4):
    one = single(
      toy_model, p["betas"][i], p["global_orient"][i], p["body_pose"][i], p["transl"][i]
    )
    np.testing.assert_allclose(batched.vertices[i], one.vertices, atol=1e-6)
    for name in one.joint_sets:
      np.testing.assert_allclose(batched.joint_sets[name][i], one.joint_sets[name], atol=1e-6)


def test_fewer_betas_than_the_model_has(lowres_model):
  f = jax.jit(smpl_jax.forward)
  betas = np.array([1.0, -0.5, 0.3], np.float32)
  short = f(lowres_model, betas)
  padded = f(lowres_model, np.pad(betas, (0, lowres_model.num_betas - 3)))
  np.testing.assert_allclose(short.vertices, padded.vertices, atol=1e-6)


def test_joints_only_path_equals_regressing_the_full_mesh(lowres_model, toy_model_keypoints):
  # The toy model has dense pose blend shapes and SPIN-style extra regressors.
  for model in (lowres_model, toy_model_keypoints):
    p = _params(model, 8, seed=4, scale=0.8)
    args = (model, p["betas"], p["global_orient"], p["body_pose"], p["transl"])
    full = jax.jit(smpl_jax.forward_batch)(*args)
    fast = jax.jit(smpl_jax.forward_joints_batch)(*args)
    assert fast.vertices is None
    regress = jax.jit(jax.vmap(smpl_jax.regress_keypoints, in_axes=(None, 0)))
    np.testing.assert_allclose(fast.keypoints, regress(model, full.vertices), atol=1e-5)
    np.testing.assert_allclose(fast.joints, full.joints, atol=1e-6)
    for name in full.joint_sets:
      np.testing.assert_allclose(fast.joint_sets[name], full.joint_sets[name], atol=1e-5)


def test_translation_reaches_keypoints_by_their_regressor_row_sums(toy_arrays):
  # A regressor row summing to 0.9 (not a convex combination) regresses 0.9 of the translation.
  nv = toy_arrays["v_template"].shape[0]
  reg = np.zeros((2, nv))
  reg[0, [3, 7]] = [0.5, 0.4]
  reg[1, 11] = 1.0
  model = smpl_jax.build_model(
    v_template=toy_arrays["v_template"],
    shapedirs=toy_arrays["shapedirs"],
    posedirs=toy_arrays["posedirs"],
    J_regressor=toy_arrays["J_regressor"],
    weights=toy_arrays["weights"],
    faces=toy_arrays["f"],
    parents=smpl_jax.joints.SMPL_PARENTS,
    keypoint_regressor=reg,
    keypoint_names=("a", "b"),
  )
  transl = np.array([0.1, 0.2, 0.3], np.float32)
  pose = np.full(69, 0.3, np.float32)
  for fn in (smpl_jax.forward, smpl_jax.forward_joints):
    out = jax.jit(fn)(model, body_pose=pose, transl=transl)
    full = jax.jit(smpl_jax.forward)(model, body_pose=pose, transl=transl)
    np.testing.assert_allclose(
      out.keypoints, smpl_jax.regress_keypoints(model, full.vertices), atol=1e-5
    )


def test_folded_keypoints_equal_the_regressor_on_the_posed_mesh(lowres_model):
  p = _params(lowres_model, 4, seed=8, scale=0.8)
  out = jax.jit(smpl_jax.forward_batch)(
    lowres_model, p["betas"], p["global_orient"], p["body_pose"], p["transl"]
  )
  regressed = jax.jit(jax.vmap(smpl_jax.regress_keypoints, in_axes=(None, 0)))(
    lowres_model, out.vertices
  )
  np.testing.assert_allclose(out.keypoints, regressed, atol=1e-5)


def test_gradients_are_finite_including_at_zero_pose(lowres_model):
  def loss(betas, go, body):
    out = smpl_jax.forward(lowres_model, betas, go, body)
    return jnp.sum(out.vertices**2) + jnp.sum(out.joint_sets["spin49"] ** 2)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  for scale in (0.0, 0.5):
    p = _params(lowres_model, 1, seed=5, scale=scale)
    gs = grad(p["betas"][0], p["global_orient"][0], p["body_pose"][0])
    for g in gs:
      assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_one_compile_per_shape(toy_model):
  traces = []

  def fn(model, betas, go, body):
    traces.append(betas.shape)
    return smpl_jax.forward_batch(model, betas, go, body, jnp.zeros((betas.shape[0], 3))).vertices

  jitted = jax.jit(fn)
  for seed in range(3):
    p = _params(toy_model, 4, seed=seed)
    jitted(toy_model, p["betas"], p["global_orient"], p["body_pose"])
  assert len(traces) == 1
  p = _params(toy_model, 5)
  jitted(toy_model, p["betas"], p["global_orient"], p["body_pose"])
  assert len(traces) == 2


def test_joint_sets_shapes_and_definitions(lowres_model):
  out = jax.jit(smpl_jax.forward)(lowres_model)
  assert out.joint_sets["spin49"].shape == (49, 3)
  assert out.joint_sets["h36m17"].shape == (17, 3)
  assert all(lowres_model.joint_set("spin49").defined)
  with pytest.raises(KeyError, match="no joint set"):
    lowres_model.joint_set("coco133")


# ----------------------------------------------------------------------------------- bad input


def test_betas_longer_than_the_model_is_a_clear_error(lowres_model):
  with pytest.raises(ValueError, match=r"betas has 17 entries .* at most 16"):
    smpl_jax.forward(lowres_model, np.zeros(17, np.float32))


@pytest.mark.parametrize("shape", [(60,), (24, 3), (23, 4), (23, 3, 2)])
def test_body_pose_of_the_wrong_size_is_a_clear_error(lowres_model, shape):
  with pytest.raises(ValueError, match=r"body_pose has shape .* expected axis-angle \(69,\)"):
    smpl_jax.forward(lowres_model, body_pose=np.zeros(shape, np.float32))


def test_ambiguous_or_missing_batch_inputs_are_clear_errors(lowres_model):
  with pytest.raises(ValueError, match=r"global_orient has shape \(3, 3\)"):
    smpl_jax.forward(lowres_model, global_orient=np.eye(3, dtype=np.float32))
  with pytest.raises(ValueError, match="at least one batched parameter"):
    smpl_jax.forward_batch(lowres_model)


def test_batched_input_to_the_single_body_function_is_a_clear_error(lowres_model):
  with pytest.raises(ValueError, match="forward_batch"):
    smpl_jax.forward(lowres_model, betas=np.zeros((4, 10), np.float32))
  with pytest.raises(ValueError, match="global_orient"):
    smpl_jax.forward(lowres_model, global_orient=np.zeros((4, 3), np.float32))
  with pytest.raises(ValueError, match="transl"):
    smpl_jax.forward(lowres_model, transl=np.zeros((4, 3), np.float32))
