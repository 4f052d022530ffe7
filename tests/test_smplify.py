"""SMPLify on the low-res open model: recovery, loss decrease, batch consistency, bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smpl_jax
from fitting import metrics, priors, smplify, synthetic
from smpl_jax.joints import GT24, GT_TORSO, OP_TORSO

# One compiled fitter per (options, shapes), shared by the tests.
fit = jax.jit(smplify.fit_batch, static_argnames=("options",))
joints_batch = jax.jit(smpl_jax.forward_joints_batch)


@pytest.fixture(scope="module")
def prior():
  return priors.load_gmm()


_DATA = {}


def _data(model, n, seed):
  """Noise-free synthetic keypoints and their ground truth (cached per model, n, seed)."""
  key = (id(model), n, seed)
  if key not in _DATA:
    _DATA[key] = synthetic.make_dataset(
      model, n, seed=seed, openpose_noise_px=0.0, openpose_dropout=0.0
    )
  return _DATA[key]


def _near(gt: smplify.FitParams, seed=0, scale=0.1):
  """A start near the truth, as SPIN's in-the-loop fits start from the network's guess."""
  rng = np.random.default_rng(seed)
  noisy = lambda x, s: np.asarray(x + rng.normal(scale=s, size=x.shape), np.float32)  # noqa
  return smplify.FitParams(
    global_orient=noisy(gt.global_orient, scale),
    body_pose=noisy(gt.body_pose, scale),
    betas=noisy(gt.betas, 5 * scale),
    cam_t=np.asarray(gt.cam_t * [1, 1, 1.1], np.float32),
  )


def _joints(model, p):
  return joints_batch(model, p.betas, p.global_orient, p.body_pose).joints


@pytest.mark.parametrize("solver,iters", [("adam", 100), ("lm", 20)])
def test_recovers_synthetic_bodies_from_a_nearby_start(lowres_model, prior, solver, iters):
  gt, kp = _data(lowres_model, 8, 0)
  init = _near(gt)
  # Noise-free keypoints: light priors (SPIN's weights pull the optimum towards the prior mode;
  # with them the fitted PA-MPJPE here is about 45 mm for Adam and 66 mm for converged LM).
  options = smplify.SmplifyOptions(solver=solver, num_iters=iters, stages=((0.5, 0.5, 1.5),))
  res = fit(lowres_model, prior, kp, init, options=options)
  assert np.all(res.success)
  # 2D: the reprojection error of the visible joints falls to a few pixels.
  assert float(np.mean(res.joint_error_px[:, GT24])) < 3.0
  assert np.all(res.loss < 0.2 * res.initial_loss)
  # 3D: closer to the truth than the start, within a stated tolerance (PA-MPJPE, 24 joints).
  truth = _joints(lowres_model, gt)
  before = 1000 * np.asarray(metrics.pa_mpjpe(_joints(lowres_model, init), truth))  # mm
  after = 1000 * np.asarray(metrics.pa_mpjpe(_joints(lowres_model, res.params), truth))
  print(f"{solver}: PA-MPJPE {before.mean():.1f} mm at the start -> {after.mean():.1f} mm")
  assert after.mean() < 0.8 * before.mean()  # measured: 66 mm -> 47 mm for both solvers
  assert after.mean() < 55.0


def test_loss_decreases_over_each_stage(lowres_model, prior):
  gt, kp = _data(lowres_model, 8, 0)
  options = smplify.SmplifyOptions(num_iters=100)
  res = fit(lowres_model, prior, kp, _near(gt, seed=1, scale=0.2), options=options)
  trace = np.asarray(res.trace)  # (B, 200): camera stage, then body stage
  for stage in (trace[:, :100], trace[:, 100:]):
    assert np.all(stage[:, -1] < stage[:, 0])
    assert np.all(np.median(np.diff(stage, axis=1), axis=1) <= 0)


def test_a_batch_of_one_equals_its_row_in_a_batch_of_64(lowres_model, prior):
  gt, kp = _data(lowres_model, 64, 2)
  init = _near(gt, seed=3)
  options = smplify.SmplifyOptions(num_iters=30)
  many = fit(lowres_model, prior, kp, init, options=options)
  row = 17
  one = fit(
    lowres_model,
    prior,
    kp[row : row + 1],
    jax.tree.map(lambda x: x[row : row + 1], init),
    options=options,
  )
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params)):
    np.testing.assert_allclose(a[0], b[row], atol=2e-4, rtol=1e-4)
  np.testing.assert_allclose(one.loss[0], many.loss[row], rtol=1e-3)


def test_similar_triangles_camera_is_close_to_the_truth(lowres_model):
  gt, kp = _data(lowres_model, 8, 0)
  init = dataclasses.replace(gt, cam_t=np.zeros_like(gt.cam_t))
  t = jax.jit(jax.vmap(lambda k, i: smplify.similar_triangles_translation(lowres_model, k, i)))(
    kp, init
  )
  np.testing.assert_allclose(t[:, 2], gt.cam_t[:, 2], rtol=0.1)
  np.testing.assert_allclose(t[:, :2], gt.cam_t[:, :2], atol=0.3)


def test_camera_stage_torso_choice_and_spins_quirk(lowres_model, prior):
  gt, kp = _data(lowres_model, 1, 4)
  kp = np.array(kp[0])  # a copy: _data is cached
  fixed = smplify._Problem(lowres_model, prior, jnp.asarray(kp), smplify.SmplifyOptions())
  quirk = smplify._Problem(
    lowres_model, prior, jnp.asarray(kp), smplify.SmplifyOptions(spin_confidence_quirk=True)
  )
  assert list(np.asarray(fixed.torso)) == list(OP_TORSO)  # all four OpenPose detected
  assert list(np.asarray(quirk.torso)) == list(GT_TORSO)  # SPIN training behaviour
  kp[9, 2] = 0.0  # OP RHip undetected -> ground-truth torso
  missing = smplify._Problem(lowres_model, prior, jnp.asarray(kp), smplify.SmplifyOptions())
  assert list(np.asarray(missing.torso)) == list(GT_TORSO)


def test_bad_keypoints_never_replace_the_start(lowres_model, prior):
  gt, kp = _data(lowres_model, 8, 0)
  kp = np.array(kp)
  init = _near(gt)
  kp[0, :, :] = np.nan  # all NaN
  kp[1, :, 2] = 0.0  # no confident keypoint
  kp[2, 3, 0] = np.inf  # one bad coordinate: that joint is ignored, the fit goes on
  options = smplify.SmplifyOptions(num_iters=30)
  res = fit(lowres_model, prior, kp, init, options=options)
  for leaf in jax.tree.leaves(res):
    assert np.all(np.isfinite(leaf))
  assert not bool(res.success[0]) and not bool(res.success[1]) and bool(res.success[2])
  for i in (0, 1):
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(init)):
      np.testing.assert_array_equal(a[i], b[i])


def test_flipped_orientation_trial_turns_a_backwards_start(lowres_model, prior):
  gt, kp = _data(lowres_model, 4, 5)
  # Start facing away; squeeze the shoulders together in 2D so the trial applies.
  init = _near(gt, seed=6, scale=0.05)
  init = dataclasses.replace(
    init, global_orient=np.asarray(jax.vmap(smplify._rotate_about_y_by_pi)(init.global_orient))
  )
  kp = np.array(kp)
  for a, b in ((2, 5), (33, 34)):
    mid = 0.5 * (kp[:, a, :2] + kp[:, b, :2])
    kp[:, a, :2] = mid - 5.0
    kp[:, b, :2] = mid + 5.0
  plain = fit(lowres_model, prior, kp, init, options=smplify.SmplifyOptions(num_iters=50))
  trial = fit(
    lowres_model,
    prior,
    kp,
    init,
    options=smplify.SmplifyOptions(num_iters=50, try_flipped_orientation=True),
  )

  def orientation_error_deg(params):
    r = smpl_jax.rotations.aa_to_rotmat
    return np.degrees(
      np.asarray(
        smpl_jax.rotations.geodesic_angle(
          r(jnp.asarray(params.global_orient)), r(jnp.asarray(gt.global_orient))
        )
      )
    )

  assert np.all(orientation_error_deg(trial.params) < 45.0)
  assert np.all(orientation_error_deg(plain.params) > 90.0)
  assert np.all(trial.loss < plain.loss)


def test_camera_stage_picks_torso_joints_one_by_one_for_standalone_fits(lowres_model, prior):
  gt, kp = _data(lowres_model, 1, 4)
  kp = np.asarray(kp[0]).copy()
  kp[GT24, 2] = 0.0  # OpenPose only (as from a folder of JSON files) ...
  kp[12, 2] = 0.0  # ... with the left hip undetected
  spin = smplify._Problem(lowres_model, prior, jnp.asarray(kp), smplify.SmplifyOptions())
  per_joint = smplify._Problem(
    lowres_model, prior, jnp.asarray(kp), smplify.SmplifyOptions(torso_per_joint=True)
  )
  assert list(np.asarray(spin.torso)) == list(GT_TORSO)  # all four OP needed
  assert float(jnp.sum(spin.torso_w)) == 0.0  # ... and no annotation: nothing to fit
  assert list(np.asarray(per_joint.torso)) == [9, 28, 2, 5]
  assert list(np.asarray(per_joint.torso_w)) == [1.0, 0.0, 1.0, 1.0]


def test_wrong_keypoint_shape_is_a_clear_error(lowres_model, prior):
  gt, _ = _data(lowres_model, 1, 0)
  one = jax.tree.map(lambda x: x[0], gt)
  with pytest.raises(ValueError, match=r"keypoints has shape \(25, 3\); expected \(49, 3\)"):
    smplify.fit_one(lowres_model, prior, jnp.zeros((25, 3)), one)


def _model_with_scaled_extra_regressor(scale):
  import tempfile
  from pathlib import Path

  from smpl_jax import toy

  folder = Path(tempfile.mkdtemp())
  np.savez(folder / "toy.npz", **toy.toy_smpl_arrays(num_vertices=6890, seed=3))
  extra = toy.toy_extra_regressors()
  np.save(folder / "J_regressor_extra.npy", extra["J_regressor_extra"] * scale)
  return smpl_jax.load_model(folder / "toy.npz")


def test_camera_stage_shortcut_equals_posing_the_body(lowres_model, prior):
  gt, kp = _data(lowres_model, 1, 4)
  one = jax.tree.map(lambda x: jnp.asarray(x[0]), gt)
  # Also on a model whose extra regressor rows sum to 0.98 (the rotation pivots by row sum).
  models = [lowres_model, _model_with_scaled_extra_regressor(0.98)]
  for model in models:
    problem = smplify._Problem(model, prior, jnp.asarray(kp[0]), smplify.SmplifyOptions())
    body = problem.body_frame_joints(one)
    for aa in ([0.3, -2.0, 0.4], [np.pi, 0.1, 0.0]):
      go = jnp.asarray(aa, jnp.float32)
      rotated = problem.rotate_body(body, go)
      full = problem.joints(go, one.body_pose, one.betas)
      np.testing.assert_allclose(rotated, full, atol=1e-5)  # metres, all 49 points


def test_interpenetration_penalty_sees_overlap_and_the_fit_reduces_it(lowres_model, prior):
  from fitting import interpenetration

  problem = smplify._Problem(lowres_model, prior, jnp.zeros((49, 3)), smplify.SmplifyOptions())
  radii = problem.sphere_radii(jnp.zeros(10))
  assert np.all(np.asarray(radii) > 0.02) and np.all(np.asarray(radii) < 0.2)
  zero = dict(global_orient=jnp.zeros(3), body_pose=jnp.zeros(69), betas=jnp.zeros(10))
  assert float(jnp.sum(problem.overlap(zero, radii) ** 2)) == 0.0  # T-pose: nothing overlaps
  # Left forearm folded through the chest: shoulder forward and elbow fully bent.
  crossed = np.zeros(69, np.float32)
  crossed[15 * 3 + 1] = -1.4  # left shoulder (joint 16) about y: arm forward
  crossed[17 * 3 + 1] = -2.6  # left elbow (joint 18) about y: forearm back through the body
  through = dict(zero, body_pose=jnp.asarray(crossed))
  assert float(jnp.sum(problem.overlap(through, radii) ** 2)) > 0.0
  # The body loss carries w^2 * sum(overlap^2), and descending it pulls the arm out.
  weighted = smplify._Problem(
    lowres_model, prior, jnp.zeros((49, 3)), smplify.SmplifyOptions(interpenetration_weight=1000.0)
  )
  cam = jnp.array([0.0, 0.0, 50.0])
  w = (4.78, 5.0, 15.2)
  extra = weighted.body_loss(through, cam, w, radii) - problem.body_loss(through, cam, w, radii)
  np.testing.assert_allclose(extra, 1e6 * jnp.sum(problem.overlap(through, radii) ** 2), rtol=1e-3)
  penalty = lambda p: jnp.sum(problem.overlap(p, radii) ** 2)  # noqa: E731
  moved, _ = jax.jit(lambda p: smplify._adam(penalty, p, 50, 1e-2))(through)
  assert float(penalty(moved)) < 0.5 * float(penalty(through))
  assert interpenetration.sphere_pairs().shape[1] == 2


def test_original_smplify_four_stage_schedule_runs_and_lowers_the_loss(lowres_model, prior):
  gt, kp = _data(lowres_model, 4, 0)
  options = smplify.SmplifyOptions(num_iters=25, stages=smplify.ORIGINAL_SMPLIFY_STAGES)
  res = fit(lowres_model, prior, kp, _near(gt, seed=2, scale=0.2), options=options)
  assert res.trace.shape == (4, 25 * 5)
  assert np.all(res.success) and np.all(res.loss < res.initial_loss)
