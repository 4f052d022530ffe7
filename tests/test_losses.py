"""SPIN's losses and SMPLify's objectives against plain-numpy transcriptions of SPIN's code.

The transcriptions follow SPIN's `train/trainer.py` (keypoint_loss, keypoint_3d_loss, shape_loss,
smpl_losses, the total with its x60) and `smplify/losses.py` (camera_fitting_loss,
body_fitting_loss, angle_prior, MaxMixturePrior), with SPIN's boolean indexing, so that a
swapped weight, a missing factor or a wrong centring fails here.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import _step_setup

import smpl_jax
from fitting import priors, smplify
from fitting.smplify import FitParams
from spin_jax import config as spin_config
from spin_jax import losses
from spin_jax import train_step as ts


@pytest.fixture(scope="module")
def prior():
  return priors.load_gmm()


# ---------------------------------------------------------------- SPIN's trainer.py, in numpy


def np_rodrigues(aa):
  theta = np.linalg.norm(aa + 1e-8, axis=-1, keepdims=True)
  k = aa / theta
  kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
  zero = np.zeros_like(kx)
  kmat = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*aa.shape[:-1], 3, 3)
  s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
  return np.eye(3) + s * kmat + (1 - c) * kmat @ kmat


def np_spin_loss(pred, batch, valid, w):
  """SPIN's Trainer.train_step loss block on numpy arrays (w: the weights by SPIN's names)."""
  # keypoint_loss
  conf = batch["keypoints"][:, :, -1:].copy()
  conf[:, :25] *= w["openpose_train_weight"]
  conf[:, 25:] *= w["gt_train_weight"]
  l_kp = (conf * (pred["keypoints_2d"] - batch["keypoints"][:, :, :-1]) ** 2).mean()
  # keypoint_3d_loss
  p3, g3 = pred["joints"][:, 25:], batch["joints3d"]
  sel = batch["has_3d"] == 1
  p3, g3 = p3[sel], g3[sel]
  c3 = g3[:, :, -1:]
  g3 = g3[:, :, :-1]
  if len(g3):
    g3 = g3 - (g3[:, 2] + g3[:, 3])[:, None] / 2
    p3 = p3 - (p3[:, 2] + p3[:, 3])[:, None] / 2
    l_kp3 = (c3 * (p3 - g3) ** 2).mean()
  else:
    l_kp3 = 0.0
  # smpl_losses
  if valid.any():
    gt_rot = np_rodrigues(batch["pose"].reshape(-1, 3)).reshape(-1, 24, 3, 3)[valid]
    l_pose = ((pred["rotmat"][valid] - gt_rot) ** 2).mean()
    l_betas = ((pred["betas"][valid] - batch["betas"][valid]) ** 2).mean()
    l_shape = np.abs(pred["vertices"][valid] - batch["vertices"][valid]).mean()
  else:
    l_pose = l_betas = l_shape = 0.0
  l_cam = (np.exp(-pred["cam"][:, 0] * 10) ** 2).mean()
  total = (
    w["shape_loss_weight"] * l_shape
    + w["keypoint_loss_weight"] * l_kp
    + w["keypoint_loss_weight"] * l_kp3
    + w["pose_loss_weight"] * l_pose
    + w["beta_loss_weight"] * l_betas
    + l_cam
  )
  return total * 60, dict(kp=l_kp, kp3=l_kp3, pose=l_pose, betas=l_betas, shape=l_shape)


def spin_weights(opts) -> dict:
  """A LossOptions under SPIN's option names (its train_options.py)."""
  return dict(
    keypoint_loss_weight=opts.keypoint,
    pose_loss_weight=opts.pose,
    beta_loss_weight=opts.betas,
    shape_loss_weight=opts.shape,
    openpose_train_weight=opts.openpose,
    gt_train_weight=opts.gt,
  )


def _random_batch(rng, b=6, v=30):
  aa = rng.normal(scale=0.5, size=(b, 24, 3))
  batch = dict(
    keypoints=np.concatenate([rng.uniform(-1, 1, (b, 49, 2)), rng.random((b, 49, 1))], -1),
    joints3d=np.concatenate([rng.normal(size=(b, 24, 3)), rng.random((b, 24, 1)) > 0.3], -1),
    has_3d=np.array([1, 0, 1, 1, 0, 1])[:b].astype(bool),
    pose=aa.reshape(b, 72),
    betas=rng.normal(size=(b, 10)),
    vertices=rng.normal(size=(b, v, 3)),
  )
  pred = dict(
    keypoints_2d=rng.uniform(-1, 1, (b, 49, 2)),
    joints=rng.normal(size=(b, 49, 3)) + 0.3,
    rotmat=np_rodrigues(aa + rng.normal(scale=0.2, size=aa.shape)),
    betas=rng.normal(size=(b, 10)),
    vertices=rng.normal(size=(b, v, 3)),
    cam=rng.normal(size=(b, 3)) * 0.1 + 0.5,
  )
  return pred, batch


def test_spin_losses_equal_a_transcription_of_spins_trainer():
  rng = np.random.default_rng(0)
  pred, batch = _random_batch(rng)
  valid = np.array([1, 1, 0, 1, 0, 0], bool)
  # Distinct weights, so that any swap of two terms changes the total.
  opts = spin_config.LossOptions(keypoint=5.0, pose=1.3, betas=0.07, shape=0.4, openpose=0.3)
  ref_total, ref = np_spin_loss(pred, batch, valid, spin_weights(opts))
  j = {k: jnp.asarray(v, jnp.float32) for k, v in pred.items()}
  gt_rot = np_rodrigues(batch["pose"].reshape(-1, 24, 3)).astype(np.float32)
  batch = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in batch.items()}
  terms = {
    "keypoints_2d": losses.keypoints_2d(j["keypoints_2d"], batch["keypoints"], 0.3, 1.0),
    "keypoints_3d": losses.keypoints_3d(j["joints"][:, 25:], batch["joints3d"], batch["has_3d"]),
    "pose": losses.pose(j["rotmat"], gt_rot, valid),
    "betas": losses.betas(j["betas"], batch["betas"], valid),
    "shape": losses.shape(j["vertices"], batch["vertices"], valid),
    "camera": losses.camera(j["cam"]),
  }
  for name, key in [
    ("keypoints_2d", "kp"),
    ("keypoints_3d", "kp3"),
    ("pose", "pose"),
    ("betas", "betas"),
    ("shape", "shape"),
  ]:
    np.testing.assert_allclose(float(terms[name]), ref[key], rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(float(losses.spin_loss(terms, opts)), ref_total, rtol=1e-5)
  # No selected row: the term is 0, as SPIN's `else` branches.
  none = np.zeros(6, bool)
  assert float(losses.pose(j["rotmat"], gt_rot, none)) == 0.0
  assert float(losses.keypoints_3d(j["joints"][:, 25:], batch["joints3d"], none)) == 0.0


def test_undefined_joints_carry_no_supervision(lowres_model, prior):
  rng = np.random.default_rng(1)
  pred, batch = _random_batch(rng)
  defined = np.ones(49, bool)
  defined[[27, 28, 37, 38]] = False  # as if the extra regressor were missing
  kp = batch["keypoints"].copy()
  kp[:, ~defined, 2] = 1.0
  garbage = kp.copy()
  garbage[:, ~defined, :2] = 50.0
  a = losses.keypoints_2d(pred["keypoints_2d"], kp, 0.0, 1.0, defined=defined)
  b = losses.keypoints_2d(pred["keypoints_2d"], garbage, 0.0, 1.0, defined=defined)
  c = losses.keypoints_2d(pred["keypoints_2d"], garbage, 0.0, 1.0)
  assert float(a) == pytest.approx(float(b)) and float(c) > 10 * float(a)
  j3 = batch["joints3d"].copy()
  j3[:, ~defined[25:], 3] = 1.0
  j3g = j3.copy()
  j3g[:, [12, 13], :3] = 40.0  # garbage at undefined rows that are not the hips
  d = defined.copy()
  d[[27, 28]] = True
  a = losses.keypoints_3d(pred["joints"][:, 25:], j3, batch["has_3d"], defined=d[25:])
  b = losses.keypoints_3d(pred["joints"][:, 25:], j3g, batch["has_3d"], defined=d[25:])
  assert float(a) == pytest.approx(float(b), rel=1e-6)
  # The fits' score: the least-squares camera and the loss ignore what the body cannot define.
  js = lowres_model.joint_set("spin49")
  cut = dataclasses.replace(
    js, sources=tuple(-1 if k in (37, 38) else s for k, s in enumerate(js.sources))
  )
  body = dataclasses.replace(
    lowres_model,
    joint_sets=tuple(cut if x.name == "spin49" else x for x in lowres_model.joint_sets),
  )
  pose = jnp.asarray(rng.normal(scale=0.2, size=(2, 72)), jnp.float32)
  betas = jnp.zeros((2, 10))
  kp_px = jnp.asarray(rng.uniform(60, 160, (2, 49, 3)), jnp.float32).at[..., 2].set(1.0)
  bad = kp_px.at[:, 37:39, :2].set(1e4)
  opts = smplify.SmplifyOptions()
  s1, _ = ts.score_fits(body, prior, kp_px, pose, betas, opts)
  s2, _ = ts.score_fits(body, prior, bad, pose, betas, opts)
  s3, _ = ts.score_fits(lowres_model, prior, bad, pose, betas, opts)
  np.testing.assert_allclose(np.asarray(s1), np.asarray(s2), rtol=1e-5)
  assert np.all(np.asarray(s3) > 2 * np.asarray(s1))


def test_trainer_refuses_a_model_without_spins_extra_joints(lowres_model, tmp_path):
  js = lowres_model.joint_set("spin49")
  cut = dataclasses.replace(
    js, sources=tuple(-1 if k in (27, 28) else s for k, s in enumerate(js.sources))
  )
  body = dataclasses.replace(
    lowres_model,
    joint_sets=tuple(cut if x.name == "spin49" else x for x in lowres_model.joint_sets),
  )
  with pytest.raises(ValueError, match=r"Right Hip.*Left Hip.*J_regressor_extra\.npy"):
    ts.require_gt_joints(body, "--config.body_model='x.pkl'")
  ts.require_gt_joints(lowres_model, "the open model")  # defines all 49


# ------------------------------------------------------ SPIN's smplify/losses.py, in numpy


def np_project(points, t, f, c):
  p = points + t
  return f * p[:, :2] / p[:, 2:3] + c


def np_gmof(x, sigma):
  return sigma**2 * x**2 / (sigma**2 + x**2)


def np_gmm(prior, pose69):
  """MaxMixturePrior.merged_log_likelihood from the prior's means, precisions and weights."""
  means = np.asarray(prior.means, np.float64)
  chol = np.asarray(prior.precision_chol, np.float64)
  precisions = chol @ np.swapaxes(chol, 1, 2)
  w = np.asarray(prior.weights, np.float64)
  sqrdets = np.sqrt(1.0 / np.linalg.det(precisions))  # sqrt(det(cov))
  nll_w = w / ((2 * np.pi) ** (69 / 2) * (sqrdets / sqrdets.min()))
  d = pose69[None] - means
  quad = np.einsum("gi,gij,gj->g", d, precisions, d)
  return np.min(0.5 * quad - np.log(nll_w))


def test_smplify_objectives_equal_a_transcription_of_spins_losses(lowres_model, prior):
  rng = np.random.default_rng(3)
  opts = smplify.SmplifyOptions()
  params = FitParams(
    jnp.asarray([np.pi - 0.2, 0.1, 0.05], jnp.float32),
    jnp.asarray(rng.normal(scale=0.2, size=69), jnp.float32),
    jnp.asarray(rng.normal(scale=0.5, size=10), jnp.float32),
    jnp.asarray([0.05, 0.2, 40.0], jnp.float32),
  )
  joints = np.asarray(
    smpl_jax.forward_joints(
      lowres_model, params.betas, params.global_orient, params.body_pose
    ).joint_sets["spin49"],
    np.float64,
  )
  f, c = 5000.0, np.array([112.0, 112.0])
  kp = np.concatenate([rng.uniform(40, 180, (49, 2)), rng.uniform(0.2, 1.0, (49, 1))], -1)
  proj = np_project(joints, np.asarray(params.cam_t, np.float64), f, c)
  pose = np.asarray(params.body_pose, np.float64)
  # body_fitting_loss (with the ignored joints zeroed as SMPLify.__call__ does)
  conf = kp[:, 2].copy()
  conf[[1, 9, 12, 27, 28]] = 0.0
  reproj = (conf**2 * np_gmof(proj - kp[:, :2], 100.0).sum(-1)).sum()
  angle = (np.exp(pose[[52, 55, 9, 12]] * np.array([1.0, -1.0, -1.0, -1.0])) ** 2).sum()
  betas = np.asarray(params.betas, np.float64)
  ref_body = reproj + 4.78**2 * np_gmm(prior, pose) + 15.2**2 * angle + 5.0**2 * (betas**2).sum()
  got = smplify.body_fitting_loss(lowres_model, prior, jnp.asarray(kp, jnp.float32), params, opts)
  np.testing.assert_allclose(float(got), ref_body, rtol=2e-5)
  # camera_fitting_loss: OpenPose torso when all four are detected, else the annotated one.
  tz_init = 38.0
  for op_detected in (True, False):
    k = kp.copy()
    if not op_detected:
      k[9, 2] = 0.0
    op, gt = [9, 12, 2, 5], [27, 28, 33, 34]
    idx = op if op_detected else gt
    ref_cam = ((k[idx, :2] - proj[idx]) ** 2).sum() + 100.0**2 * (40.0 - tz_init) ** 2
    got = smplify.camera_fitting_loss(lowres_model, jnp.asarray(k, jnp.float32), params, tz_init)
    np.testing.assert_allclose(float(got), ref_cam, rtol=2e-5)
  # The score of a fit (get_fitting_loss, output='reprojection', mean over the 49 joints).
  got = smplify.fitting_loss(lowres_model, prior, jnp.asarray(kp, jnp.float32), params, opts)
  np.testing.assert_allclose(float(got), reproj / 49, rtol=2e-5)


# ----------------------------------------------------------------- the compiled train step


@pytest.fixture(scope="module")
def data_dir(tiny_train_data):
  return tiny_train_data


def test_train_step_is_spins_loss_compiles_once_and_overfits_a_batch(data_dir, tmp_path):
  cfg, body, prior, tx, graphdef, state, batch = _step_setup(
    data_dir,
    tmp_path,
    batch_size=8,
    lr=1e-4,
    **{"fit.run": False, "model.dropout": 0.0, "loss.openpose": 0.2, "loss.betas": 0.05},
  )
  traces = []

  def step(s, b):
    traces.append(1)
    return ts.train_step(s, b, body, prior, graphdef=graphdef, tx=tx, cfg=cfg)

  step = jax.jit(step)
  # The prediction the step sees: train mode, batch statistics, no dropout.
  from flax import nnx

  model = nnx.merge(graphdef, state.params, state.rest, copy=True)
  out = model(ts.normalize_images(batch["image"]))
  joints = np.asarray(ts.spin49(body, out.rotmat, out.betas), np.float64)
  cam = np.asarray(out.cam, np.float64)  # SPIN: t = [tx, ty, 2 f / (img_res s + 1e-9)]
  cam_t = np.stack([cam[:, 1], cam[:, 2], 2 * 5000.0 / (224.0 * cam[:, 0] + 1e-9)], -1)
  kp2d = np.stack([np_project(j, t, 5000.0, 0.0) for j, t in zip(joints, cam_t)]) / 112.0
  pred = dict(
    keypoints_2d=kp2d,
    joints=joints,
    rotmat=np.asarray(out.rotmat, np.float64),
    betas=np.asarray(out.betas, np.float64),
    vertices=np.zeros((8, 1, 3)),
    cam=np.asarray(out.cam, np.float64),
  )
  ref = {k: np.asarray(v, np.float64) for k, v in batch.items() if k != "image"}
  ref["vertices"] = np.zeros((8, 1, 3))
  w = spin_weights(cfg.loss)
  # Without fitting and without fits files only ground truth supervises pose and shape.
  ref_total, _ = np_spin_loss(pred, ref, batch["has_smpl"].astype(bool), w)
  first = None
  for i in range(30):
    state, metrics = step(state, batch)
    if i == 0:
      first = float(metrics["loss"])
      np.testing.assert_allclose(first, ref_total, rtol=2e-4)
  assert len(traces) == 1  # one compilation for every step
  assert float(metrics["loss"]) < 0.1 * first  # one tiny batch is overfitted
