"""SPIN's training step (SPIN_SPEC 6) as one pure function, jitted once at the entry point.

    state, metrics = train_step(state, batch, body, prior, graphdef=..., tx=..., cfg=...)

Order: ground-truth joints; the stored fits gathered in the batch's augmented frame and scored;
the network's prediction; SMPLify started from the prediction under `stop_gradient`, on the
samples without ground-truth SMPL (all of them with `fit.fit_gt`, as SPIN); a new fit replaces
the stored one where it is finite and scores strictly better (SPIN's rule; `fit.require_success`
also asks it to beat its own start); the fits table is written back in the canonical frame; the
extreme-shape guard; ground truth overrides fits where `has_smpl`; fits supervise only below the
score threshold; SPIN's losses and weights (`spin_jax.losses`); Adam. Joints the body model
cannot define carry no supervision. A step whose loss or gradients are not finite changes nothing
(params, optimiser, batch statistics, fits) and says so in `metrics["finite"]`, which the loop
reads at its logging intervals.

One deliberate change (SPIN_SPEC 12.2): SPIN scores the stored fit with a least-squares camera
and the new fit with its own optimised camera. Here both are scored with the same rule, the
least-squares camera on the 24 ground-truth keypoints (`score_fits`), so a fit is never kept
or rejected because of how its camera was found.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import smpl_jax
from fitting import smplify
from fitting.smplify import FitParams
from smpl_jax import camera, rotations
from smpl_jax.joints import GT24
from spin_jax import fits as fits_lib
from spin_jax import losses
from spin_jax import metrics as metrics_lib
from spin_jax.config import TrainConfig
from spin_jax.model import normalize_images


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class TrainState:
  params: nnx.State
  rest: nnx.State  # batch statistics, dropout RNG state, fixed buffers
  opt_state: optax.OptState
  fits: fits_lib.FitsTable
  step: jax.Array


def smplify_options(cfg: TrainConfig) -> smplify.SmplifyOptions:
  return smplify.SmplifyOptions(
    num_iters=cfg.fit.num_iters, solver=cfg.fit.solver, step_size=cfg.fit.step_size
  )


def spin49(body, pose, betas):
  """(B, 49, 3) joints of axis-angle (B, 72) or rotation-matrix (B, 24, 3, 3) poses."""
  if pose.ndim == 4:
    out = smpl_jax.forward_joints_batch(body, betas, pose[:, :1], pose[:, 1:])
  else:
    out = smpl_jax.forward_joints_batch(body, betas, pose[:, :3], pose[:, 3:])
  return out.joint_sets["spin49"]


def keypoints_px(keypoints):
  """SPIN's normalised [-1, 1] keypoints -> pixels of the 224 px fitting frame."""
  xy = 0.5 * camera.IMG_RES * (keypoints[..., :2] + 1.0)
  return jnp.concatenate([xy, keypoints[..., 2:]], axis=-1)


def defined_joints(body) -> jax.Array:
  """(49,) bool: the SPIN joints `body` defines (SMPL without J_regressor_extra.npy lacks 9)."""
  return jnp.asarray(body.joint_set("spin49").defined)


def require_gt_joints(body, where: str) -> None:
  """Refuses a body model that cannot define all 24 ground-truth joints of SPIN's 49.

  SMPL alone defines 40 of the 49; the other nine (both hips, LSP neck and head top, ...) come
  from SPIN's `J_regressor_extra.npy`. The 2D terms could leave them out, but the 3D loss
  centres on the hips and validation scores LSP's 14 joints, so training would run on zeros.
  """
  js = body.joint_set("spin49")
  missing = [n for n, ok in zip(js.names[GT24], js.defined[GT24]) if not ok]
  if missing:
    raise ValueError(
      f"{where}: the body model {body.name} cannot define SPIN's joints {missing}: the 3D loss "
      "centres on the hips and validation scores LSP's 14 joints. Put SPIN's "
      "J_regressor_extra.npy (data/ of SPIN, from its fetch_data.sh) next to the SMPL file, or "
      "train on the open model (--config.body_model='')"
    )


def score_fits(body, prior, kp_px, pose, betas, options):
  """SPIN's fitting loss of (pose, betas) with the least-squares camera on the 24 ground-truth
  keypoints (undefined joints left out); +inf where that camera or loss is not finite."""
  joints = spin49(body, pose, betas)
  conf = jnp.where(defined_joints(body)[GT24], kp_px[:, GT24, 2], 0.0)
  cam_t = camera.estimate_translation(joints[:, GT24], kp_px[:, GT24, :2], conf)
  params = FitParams(pose[:, :3], pose[:, 3:], betas, cam_t)
  loss = jax.vmap(lambda k, p: smplify.fitting_loss(body, prior, k, p, options))(kp_px, params)
  return jnp.where(jnp.isfinite(loss), loss, jnp.inf), joints


def fit_where_needed(body, prior, kp_px, init: FitParams, need, options, chunks: int):
  """SMPLify on the rows where `need` only, under static shapes.

  The rows are ordered needed-first and fitted in chunks of B / `chunks` rows, as many chunks
  as the needed rows fill (`lax.while_loop`: the fit is compiled once, at the chunk size, and a
  batch with nothing to fit fits nothing). At SPIN's mix a third of the samples have ground-truth
  SMPL, so with 4 chunks most batches fit 3 of them. One chunk suits accelerators, where a fit
  of B rows takes about as long as one of B / 4; several chunks suit CPUs.

  Returns (params, success, fitted): params are the start on rows not fitted; success is the fit's
  own (better than its start) and False where not fitted; `fitted` equals `need`.
  """
  b = need.shape[0]
  if b % chunks:
    raise ValueError(f"fit.chunks={chunks} must divide the batch size {b}")
  size = b // chunks
  order = jnp.argsort(jnp.logical_not(need), stable=True)  # needed rows first, in batch order
  num_chunks = (jnp.sum(need) + size - 1) // size

  def fit_chunk(carry):
    i, params, success = carry
    idx = jax.lax.dynamic_slice_in_dim(order, i * size, size)
    sub = smplify.fit_batch(body, prior, kp_px[idx], jax.tree.map(lambda x: x[idx], init), options)
    keep = need[idx]  # the last chunk's padding rows (ground truth) keep their start
    params = jax.tree.map(
      lambda full, part: full.at[idx].set(jnp.where(keep[:, None], part, full[idx])),
      params,
      sub.params,
    )
    return i + 1, params, success.at[idx].set(sub.success & keep)

  start = (jnp.zeros((), jnp.int32), init, jnp.zeros(b, bool))
  _, params, success = jax.lax.while_loop(lambda c: c[0] < num_chunks, fit_chunk, start)
  return params, success, need


def train_step(state: TrainState, batch: dict, body, prior, *, graphdef, tx, cfg: TrainConfig):
  opts = smplify_options(cfg)
  b = batch["keypoints"].shape[0]
  kp = batch["keypoints"]
  kp_px = keypoints_px(kp)
  has_smpl, has_3d = batch["has_smpl"], batch["has_3d"]
  gt_pose, gt_betas = batch["pose"], batch["betas"]
  rows = (batch["dataset_id"], batch["index"], batch["rot_deg"], batch["is_flipped"])
  opt_pose, opt_betas = fits_lib.gather(state.fits, *rows)
  opt_score, _ = score_fits(body, prior, kp_px, opt_pose, opt_betas, opts)
  images = normalize_images(batch["image"])
  defined49 = defined_joints(body)

  model = nnx.merge(graphdef, state.params, state.rest, copy=True)  # leave `state` intact

  def loss_fn(model):
    pred = model(images)  # updates batch statistics and dropout RNG state in place
    pred_j = spin49(body, pred.rotmat, pred.betas)
    pred_cam_t = camera.weak_perspective_to_translation(pred.cam)
    pred_kp = camera.perspective_projection(pred_j, pred_cam_t, camera.FOCAL_LENGTH)
    pred_kp = pred_kp / (camera.IMG_RES / 2.0)

    best_pose, best_betas, score = opt_pose, opt_betas, opt_score
    update = jnp.zeros(b, bool)
    if cfg.fit.run:
      rot = jax.lax.stop_gradient(pred.rotmat)
      aa = rotations.rotmat_to_aa(rot)
      aa = jnp.where(jnp.isfinite(aa), aa, 0.0)
      init = FitParams(
        aa[:, 0],
        aa[:, 1:].reshape(b, 69),
        jax.lax.stop_gradient(pred.betas),
        jax.lax.stop_gradient(pred_cam_t),
      )
      # SPIN fits every sample (fit.fit_gt), also those that ground truth overrides. Inside a
      # while loop the fit stays out of differentiation (measured: a scan here ran twice).
      need = jnp.ones(b, bool) if cfg.fit.fit_gt else jnp.logical_not(has_smpl)
      fitted_params, success, fitted = fit_where_needed(
        body, prior, kp_px, init, need, opts, cfg.fit.chunks
      )
      new_pose = jnp.concatenate([fitted_params.global_orient, fitted_params.body_pose], axis=1)
      new_betas = fitted_params.betas
      new_score, _ = score_fits(body, prior, kp_px, new_pose, new_betas, opts)
      # SPIN's rule: keep the new fit where it scores better than the stored one.
      update = fitted & jnp.isfinite(new_score) & (new_score < opt_score)
      if cfg.fit.require_success:  # ... and is better than its own start
        update = update & success
      best_pose = jnp.where(update[:, None], new_pose, opt_pose)
      best_betas = jnp.where(update[:, None], new_betas, opt_betas)
      score = jnp.where(update, new_score, opt_score)
    # Extreme shapes supervise betas with zeros (SPIN #42); ground truth overrides fits.
    extreme = jnp.any(jnp.abs(best_betas) > cfg.fit.max_beta, axis=1)
    target_betas = jnp.where(extreme[:, None], 0.0, best_betas)
    target_pose = jnp.where(has_smpl[:, None], gt_pose, best_pose)
    target_betas = jnp.where(has_smpl[:, None], gt_betas, target_betas)
    # Without fitting and without fits files the table holds only the mean pose: HMR-style
    # regression then takes pose and shape supervision from ground truth alone.
    use_fits = cfg.fit.run or bool(cfg.data.fits_files)
    valid = ((score < cfg.fit.threshold) & use_fits) | has_smpl

    target_rot = rotations.aa_to_rotmat(target_pose.reshape(b, 24, 3))
    terms = {
      "keypoints_2d": losses.keypoints_2d(
        pred_kp, kp, cfg.loss.openpose, cfg.loss.gt, defined=defined49
      ),
      "keypoints_3d": losses.keypoints_3d(
        pred_j[:, GT24], batch["joints3d"], has_3d, defined=defined49[GT24]
      ),
      "pose": losses.pose(pred.rotmat, target_rot, valid),
      "betas": losses.betas(pred.betas, target_betas, valid),
      "camera": losses.camera(pred.cam),
    }
    if cfg.loss.shape > 0:
      pred_v = smpl_jax.forward_batch(body, pred.betas, pred.rotmat[:, :1], pred.rotmat[:, 1:])
      tgt_v = smpl_jax.forward_batch(body, target_betas, target_pose[:, :3], target_pose[:, 3:])
      terms["shape"] = losses.shape(pred_v.vertices, tgt_v.vertices, valid)
    total = losses.spin_loss(terms, cfg.loss)
    aux = dict(
      terms=terms,
      update=update,
      valid=valid,
      best_pose=best_pose,
      best_betas=best_betas,
      score=score,
    )
    return total, aux

  (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  _, _, rest = nnx.split(model, nnx.Param, ...)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_fits = fits_lib.scatter(
    state.fits, *rows, aux["update"], aux["best_pose"], aux["best_betas"]
  )
  finite = jnp.isfinite(loss) & jnp.all(
    jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
  )
  new = TrainState(params, rest, opt_state, new_fits, state.step + 1)
  # A non-finite step changes nothing; the loop sees `finite` and stops.
  out = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
  scores = aux["score"]
  no_gt = jnp.logical_not(has_smpl)
  metrics = {
    "loss": loss,
    **{f"loss/{k}": v for k, v in aux["terms"].items()},
    "fits/update_rate": jnp.mean(aux["update"].astype(jnp.float32)),
    "fits/valid_rate": jnp.mean(aux["valid"].astype(jnp.float32)),
    "fits/median_score": jnp.median(jnp.where(jnp.isfinite(scores), scores, 1e6)),
    # Fraction of the fits without ground truth that would pass other thresholds (calibration).
    **{
      f"fits/below_{m}x_threshold": jnp.sum((scores < m * cfg.fit.threshold) & no_gt)
      / jnp.maximum(jnp.sum(no_gt), 1)
      for m in (0.5, 1, 2, 4)
    },
    "finite": finite,
  }
  return out, metrics


def predict_joints(graphdef, params, rest, body, images):
  """Eval-mode prediction: (J24 joints (B, 24, 3), Prediction)."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  pred = model(normalize_images(images))
  return spin49(body, pred.rotmat, pred.betas)[:, GT24], pred


def eval_step(graphdef, params, rest, body, batch):
  """Per-example MPJPE and PA-MPJPE (metres) on SPIN's 14 evaluation joints."""
  j24, _ = predict_joints(graphdef, params, rest, body, batch["image"])
  pred, gt = metrics_lib.j14(j24), metrics_lib.j14(batch["joints3d"][..., :3])
  return {"mpjpe": metrics_lib.mpjpe(pred, gt), "pa_mpjpe": metrics_lib.pa_mpjpe(pred, gt)}


def mean_pose_eval(body, mean_pose_aa, batch):
  """The same metrics for the mean parameters (the network's starting estimate)."""
  b = batch["joints3d"].shape[0]
  pose = jnp.broadcast_to(mean_pose_aa, (b, 72))
  j24 = spin49(body, pose, jnp.zeros((b, 10)))[:, GT24]
  pred, gt = metrics_lib.j14(j24), metrics_lib.j14(batch["joints3d"][..., :3])
  return {"mpjpe": metrics_lib.mpjpe(pred, gt), "pa_mpjpe": metrics_lib.pa_mpjpe(pred, gt)}
