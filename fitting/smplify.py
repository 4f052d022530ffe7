"""SMPLify as SPIN runs it (SPIN_SPEC 4), compiled: a pure function per example, vmap for batches.

Stage 1 (camera): global orientation and camera translation against the torso keypoints, with
a depth regulariser. Stage 2 (body): body pose, betas and global orientation against all 49
keypoints under the Geman-McClure robustifier, with the max-mixture GMM pose prior, the
elbow/knee angle prior and the shape prior. Each stage is a `lax.scan` of fixed length.

Two solvers share the same objectives: SPIN's Adam (lr 1e-2, fresh moments per stage) and a
Levenberg-Marquardt solver on the equivalent residual vectors (the original SMPLify minimised the
same residuals with Powell's dogleg).

Keypoints are (49, 3) rows (x, y, confidence) in pixels of the img_res crop, SPIN's 49-joint
order (smpl_jax.joints.SPIN49_NAMES); the camera looks down +z with principal point at the crop
centre and SPIN's focal length.

SPIN's in-place confidence quirk (SPIN_SPEC 4.4, 12.1): in SPIN's training step the OpenPose hip
confidences are already zeroed when the camera stage runs, so that stage always falls back to
the ground-truth torso joints. Here the confidences are never modified: the camera stage uses
the OpenPose torso when all four of its joints are detected, as SPIN's demo path does.
`SmplifyOptions(spin_confidence_quirk=True)` reproduces the training behaviour.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Bool, Float

import smpl_jax
from fitting import interpenetration, priors
from smpl_jax import camera, rotations
from smpl_jax.joints import GT_TORSO, OP_TORSO
from smpl_jax.typing import Array

# SPIN's 49-joint indices (SPIN_SPEC 4.1, 4.2); the torsos are smpl_jax.joints'.
IGNORED_JOINTS = (1, 9, 12, 27, 28)  # OP Neck, OP RHip, OP LHip, Right Hip, Left Hip
SHOULDERS = (OP_TORSO[2:], GT_TORSO[2:])  # (OP, GT) right/left shoulder pairs


@dataclasses.dataclass(frozen=True)
class SmplifyOptions:
  """Static settings. Defaults are SPIN's (SPIN_SPEC 4.1-4.3).

  `stages` are (pose prior, shape prior, angle prior) weights of successive body stages, each
  run for `num_iters` steps; SPIN uses one stage, the original SMPLify the four of
  `ORIGINAL_SMPLIFY_STAGES`.
  """

  num_iters: int = 100
  solver: str = "adam"  # "adam" (SPIN) or "lm" (Levenberg-Marquardt)
  step_size: float = 1e-2  # Adam learning rate
  lm_damping: float = 1e-2  # initial Levenberg-Marquardt damping (relative to diag(J^T J))
  focal_length: float = camera.FOCAL_LENGTH
  img_res: int = camera.IMG_RES
  sigma: float = 100.0  # Geman-McClure scale, pixels
  stages: tuple[tuple[float, float, float], ...] = ((4.78, 5.0, 15.2),)
  depth_loss_weight: float = 100.0
  num_betas: int = 10
  ignored_joints: tuple[int, ...] = IGNORED_JOINTS
  joint_set: str = "spin49"
  spin_confidence_quirk: bool = False
  torso_per_joint: bool = False  # camera stage: each torso joint OpenPose-else-annotated
  try_flipped_orientation: bool = False  # original SMPLify: also fit the 180-degree turn
  flip_shoulder_px: float = 25.0  # ... when the 2D shoulders are closer than this
  # Sphere-based interpenetration penalty (fitting.interpenetration), weight per metre of
  # overlap; 0 = off, as in SPIN. About 1000 makes 1 cm of overlap cost like 100 px^2.
  interpenetration_weight: float = 0.0

  def __post_init__(self):
    if self.solver not in ("adam", "lm"):
      raise ValueError(f"solver must be 'adam' or 'lm', got {self.solver!r}.")
    if self.num_iters < 1 or not self.stages:
      raise ValueError("num_iters must be >= 1 and stages non-empty.")


# The original SMPLify's annealed schedule (SPIN_SPEC 4.5): pose prior weights
# 404, 404, 57.4, 4.78; shape 100, 50, 10, 5; angle prior 3.17 x the pose weight.
ORIGINAL_SMPLIFY_STAGES = tuple(
  (w, s, 3.17 * w) for w, s in zip((404.0, 404.0, 57.4, 4.78), (100.0, 50.0, 10.0, 5.0))
)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class FitParams:
  """SMPL parameters and camera translation of one fit (axis-angle, metres)."""

  global_orient: Float[Array, "3"]
  body_pose: Float[Array, "69"]
  betas: Float[Array, " S"]
  cam_t: Float[Array, "3"]


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class FitResult:
  """Outcome of one fit. If the fit failed (non-finite, or worse than its start), `params` are
  the starting parameters and `success` is False."""

  params: FitParams
  loss: Float[Array, ""]  # SPIN's fitting loss: mean over the 49 joints of `reprojection`
  reprojection: Float[Array, "49"]  # c_j^2 sum_xy rho(residual), ignored joints zeroed (px^2)
  joint_error_px: Float[Array, "49"]  # |projection - keypoint| in pixels
  success: Bool[Array, ""]
  initial_loss: Float[Array, ""]
  trace: Float[Array, " T"]  # objective after every step, camera stage then body stages


def gmof(residual, sigma):
  """Geman-McClure: sigma^2 r^2 / (sigma^2 + r^2), elementwise."""
  sq = residual * residual
  return sigma**2 * sq / (sigma**2 + sq)


def _clean_keypoints(keypoints, defined):
  """Non-finite rows and joints the model cannot define get confidence 0 (and coordinates 0)."""
  finite = jnp.all(jnp.isfinite(keypoints), axis=-1)
  conf = jnp.where(finite & defined, jnp.clip(keypoints[:, 2], 0.0, None), 0.0)
  xy = jnp.where(finite[:, None], keypoints[:, :2], 0.0)
  return xy, conf


def _ignored_mask(options):
  mask = jnp.ones((49,), bool)
  return mask.at[jnp.asarray(options.ignored_joints, jnp.int32)].set(False)


class _Problem:
  """Objectives of one example (closed over the body model, prior, keypoints and options)."""

  def __init__(self, body, prior, keypoints, options):
    self.body, self.prior, self.options = body, prior, options
    defined = jnp.asarray(body.joint_set(options.joint_set).defined)
    self.xy, self.conf = _clean_keypoints(keypoints, defined)
    self.body_conf = jnp.where(_ignored_mask(options), self.conf, 0.0)
    self.center = jnp.full((2,), options.img_res / 2.0, keypoints.dtype)
    camera_conf = self.body_conf if options.spin_confidence_quirk else self.conf
    op, gt = jnp.asarray(OP_TORSO), jnp.asarray(GT_TORSO)
    if options.torso_per_joint:
      # Standalone use: each torso joint from OpenPose if detected, else from the annotation.
      self.torso = jnp.where(camera_conf[op] > 0, op, gt)
    else:
      # SPIN: the OpenPose torso if all four are detected, else the annotated torso.
      self.torso = jnp.where(jnp.all(camera_conf[op] > 0), op, gt)
    # SPIN does not weight the camera loss by confidence (it assumes all four annotated torso
    # joints exist); unannotated ones would enter with meaningless coordinates, so they are
    # left out here, except under spin_confidence_quirk, which reproduces SPIN exactly.
    if options.spin_confidence_quirk:
      self.torso_w = jnp.ones((4,), keypoints.dtype)
    else:
      self.torso_w = (self.conf[self.torso] > 0).astype(keypoints.dtype)

  def joints(self, global_orient, body_pose, betas):
    out = smpl_jax.forward_joints(self.body, betas, global_orient, body_pose)
    return out.joint_sets[self.options.joint_set]

  def sphere_radii(self, betas):
    """Interpenetration sphere radii of the body shaped by `betas` (fixed during a fit)."""
    nb = betas.shape[0]
    v_shaped = self.body.v_template + jnp.einsum("vcs,s->vc", self.body.shapedirs[..., :nb], betas)
    rest = smpl_jax.rest_joints(self.body, betas)
    return interpenetration.sphere_radii(v_shaped, self.body.weights, rest)

  def overlap(self, p, radii):
    out = smpl_jax.forward_joints(self.body, p["betas"], p["global_orient"], p["body_pose"])
    return interpenetration.overlap_residuals(out.joints, radii)

  def project(self, joints, cam_t):
    return camera.perspective_projection(joints, cam_t, self.options.focal_length, self.center)

  # Camera stage: residuals r with |r|^2 the camera loss.
  def body_frame_joints(self, fixed: FitParams):
    """Points with the root unrotated, the pelvis, and each point's weight s. In the camera
    stage body pose and betas are frozen, and the root rotation enters neither the pose blend
    shapes nor the rest joints, so a point regressed with row sum s (1 for kinematic joints)
    turns as R (p - s pelvis) + s pelvis, exactly: the body is posed once per fit instead of
    once per camera step."""
    out = smpl_jax.forward_joints(self.body, fixed.betas, None, fixed.body_pose)
    js = self.body.joint_set(self.options.joint_set)
    skin = jnp.concatenate(
      [jnp.ones((self.body.num_joints,)), jnp.sum(self.body.keypoint_skin, axis=-1)]
    )
    s = jnp.where(jnp.asarray(js.defined), skin[jnp.maximum(jnp.asarray(js.sources), 0)], 0.0)
    return out.joint_sets[self.options.joint_set], out.joints[0], s

  def rotate_body(self, body_joints, global_orient):
    joints, pelvis, s = body_joints
    rot = rotations.aa_to_rotmat(global_orient)
    anchor = s[:, None] * pelvis
    return jnp.matmul(joints - anchor, rot.T, precision="highest") + anchor

  def camera_residuals(self, p, body_joints, tz_init):
    posed = self.rotate_body(body_joints, p["global_orient"])
    proj = self.project(posed, p["cam_t"])
    res = (proj[self.torso] - self.xy[self.torso]) * self.torso_w[:, None]
    depth = self.options.depth_loss_weight * (p["cam_t"][2] - tz_init)
    return jnp.concatenate([res.reshape(-1), depth[None]])

  # Body stage.
  def data_terms(self, p, cam_t):
    proj = self.project(self.joints(p["global_orient"], p["body_pose"], p["betas"]), cam_t)
    return proj - self.xy

  def body_loss(self, p, cam_t, weights, radii=None):
    pose_w, shape_w, angle_w = weights
    res = self.data_terms(p, cam_t)
    data = jnp.sum(self.body_conf**2 * jnp.sum(gmof(res, self.options.sigma), axis=-1))
    loss = (
      data
      + pose_w**2 * priors.gmm_energy(self.prior, p["body_pose"])
      + angle_w**2 * priors.angle_energy(p["body_pose"])
      + shape_w**2 * priors.shape_energy(p["betas"])
    )
    if self.options.interpenetration_weight:
      loss += self.options.interpenetration_weight**2 * jnp.sum(self.overlap(p, radii) ** 2)
    return loss

  def body_residuals(self, p, cam_t, weights, radii=None):
    pose_w, shape_w, angle_w = weights
    res = self.data_terms(p, cam_t)
    sigma = self.options.sigma
    robust = sigma * res / jnp.sqrt(sigma**2 + res * res)  # robust^2 = gmof(res)
    parts = [
      (self.body_conf[:, None] * robust).reshape(-1),
      pose_w * priors.gmm_residuals(self.prior, p["body_pose"]),
      angle_w * priors.angle_prior_residuals(p["body_pose"]),
      shape_w * p["betas"],
    ]
    if self.options.interpenetration_weight:
      parts.append(self.options.interpenetration_weight * self.overlap(p, radii))
    return jnp.concatenate(parts)

  def reprojection(self, params: FitParams):
    res = self.data_terms(
      dict(global_orient=params.global_orient, body_pose=params.body_pose, betas=params.betas),
      params.cam_t,
    )
    per_joint = self.body_conf**2 * jnp.sum(gmof(res, self.options.sigma), axis=-1)
    return per_joint, jnp.linalg.norm(res, axis=-1)


# ------------------------------------------------------------------------------------ solvers


def _adam(loss_fn, x0, num_iters, step_size):
  """`num_iters` Adam steps on a pytree (fresh moments); returns x and the loss per step."""
  opt = optax.adam(step_size, b1=0.9, b2=0.999, eps=1e-8)

  def step(carry, _):
    x, state = carry
    loss, grad = jax.value_and_grad(loss_fn)(x)
    updates, state = opt.update(grad, state, x)
    return (optax.apply_updates(x, updates), state), loss

  (x, _), trace = jax.lax.scan(step, (x0, opt.init(x0)), None, num_iters)
  return x, trace


def _levenberg_marquardt(residual_fn, x0, num_iters, damping):
  """Levenberg-Marquardt with Marquardt's diagonal scaling and a fixed number of iterations.

  Each iteration solves (J^T J + lambda diag(J^T J)) dx = -J^T r (Cholesky), accepts the step if
  it lowers |r|^2 (then lambda /= 3), else rejects it (lambda *= 4). Jacobians by forward mode.
  """
  flat0, unravel = ravel_pytree(x0)
  fn = lambda v: residual_fn(unravel(v))  # noqa: E731
  n = flat0.shape[0]

  def step(carry, _):
    x, lam, cost = carry
    r = fn(x)
    jac = jax.jacfwd(fn)(x)
    jtj = jnp.matmul(jac.T, jac, precision="highest")  # normal equations: float32 throughout
    g = jnp.matmul(jac.T, r, precision="highest")
    diag = jnp.maximum(jnp.diagonal(jtj), 1e-9)
    a = jtj + lam * jnp.diag(diag) + 1e-12 * jnp.eye(n, dtype=x.dtype)
    dx = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), g)
    new_cost = jnp.sum(fn(x + dx) ** 2)
    better = jnp.isfinite(new_cost) & (new_cost < cost)
    x = jnp.where(better, x + dx, x)
    lam = jnp.clip(jnp.where(better, lam / 3.0, lam * 4.0), 1e-9, 1e9)
    cost = jnp.where(better, new_cost, cost)
    return (x, lam, cost), cost

  cost0 = jnp.sum(fn(flat0) ** 2)
  (x, _, _), trace = jax.lax.scan(
    step, (flat0, jnp.asarray(damping, flat0.dtype), cost0), None, num_iters
  )
  return unravel(x), trace


# --------------------------------------------------------------------------------------- fit


def _fit(problem: _Problem, init: FitParams, options: SmplifyOptions):
  """Camera stage, then the body stages, from `init`. Returns the final FitParams and trace."""
  tz_init = init.cam_t[2]
  cam_p = dict(global_orient=init.global_orient, cam_t=init.cam_t)
  body_joints = problem.body_frame_joints(init)
  if options.solver == "adam":
    cam_loss = lambda p: jnp.sum(problem.camera_residuals(p, body_joints, tz_init) ** 2)  # noqa: E731
    cam_p, cam_trace = _adam(cam_loss, cam_p, options.num_iters, options.step_size)
  else:
    cam_p, cam_trace = _levenberg_marquardt(
      lambda p: problem.camera_residuals(p, body_joints, tz_init),
      cam_p,
      options.num_iters,
      options.lm_damping,
    )
  cam_t = cam_p["cam_t"]
  body_p = dict(global_orient=cam_p["global_orient"], body_pose=init.body_pose, betas=init.betas)
  traces = [cam_trace]
  radii = problem.sphere_radii(init.betas) if options.interpenetration_weight else None
  for weights in options.stages:
    if options.solver == "adam":
      body_p, trace = _adam(
        lambda p, w=weights: problem.body_loss(p, cam_t, w, radii),
        body_p,
        options.num_iters,
        options.step_size,
      )
    else:
      body_p, trace = _levenberg_marquardt(
        lambda p, w=weights: problem.body_residuals(p, cam_t, w, radii),
        body_p,
        options.num_iters,
        options.lm_damping,
      )
    traces.append(trace)
  return FitParams(cam_t=cam_t, **body_p), jnp.concatenate(traces)


def _rotate_about_y_by_pi(global_orient):
  """The body turned 180 degrees about its vertical axis (R_y(pi) applied after the root)."""
  r = rotations.aa_to_rotmat(global_orient)
  flip = jnp.diag(jnp.array([-1.0, 1.0, -1.0], global_orient.dtype))
  return rotations.rotmat_to_aa(r @ flip)


def fit_one(
  body: smpl_jax.BodyModel,
  prior: priors.GmmPrior,
  keypoints: Float[Array, "49 3"],
  init: FitParams,
  options: SmplifyOptions = SmplifyOptions(),
) -> FitResult:
  """Fits SMPL to one person's 49 keypoints starting from `init` (SPIN's SMPLify)."""
  if keypoints.shape != (49, 3):
    raise ValueError(
      f"keypoints has shape {keypoints.shape}; expected (49, 3) for one example "
      "(x, y, confidence in crop pixels; vmap or fit_batch for a batch)."
    )
  nb = init.betas.shape[-1]
  if nb > body.num_betas:
    raise ValueError(f"init.betas has {nb} entries; the body model has {body.num_betas}.")
  problem = _Problem(body, prior, keypoints, options)
  params, trace = _fit(problem, init, options)
  if options.try_flipped_orientation:
    # Original SMPLify: when the shoulders nearly coincide in 2D the facing direction is
    # ambiguous; fit the 180-degree turn too and keep the better of the two.
    turned = dataclasses.replace(init, global_orient=_rotate_about_y_by_pi(init.global_orient))
    params_t, trace_t = _fit(problem, turned, options)
    op, gt = SHOULDERS
    conf = problem.conf
    pair = jnp.where(conf[op[0]] * conf[op[1]] > 0, jnp.asarray(op), jnp.asarray(gt))
    close = jnp.linalg.norm(problem.xy[pair[0]] - problem.xy[pair[1]]) < options.flip_shoulder_px
    loss_a = jnp.mean(problem.reprojection(params)[0])
    loss_b = jnp.mean(problem.reprojection(params_t)[0])
    take_t = close & ((loss_b < loss_a) | ~jnp.isfinite(loss_a))
    params = jax.tree.map(lambda a, b: jnp.where(take_t, b, a), params, params_t)
    trace = jnp.where(take_t, trace_t, trace)
  return _finish(problem, init, params, trace)


def _finish(problem, init, params, trace):
  reproj0, err0 = problem.reprojection(init)
  reproj, err = problem.reprojection(params)
  initial_loss, loss = jnp.mean(reproj0), jnp.mean(reproj)
  finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
  # A fit that turned non-finite, ended worse than its start, or had no keypoint to fit (only
  # the priors acted) never replaces the start.
  has_data = jnp.sum(problem.body_conf) > 0
  success = finite & has_data & jnp.isfinite(loss) & (loss <= initial_loss)
  keep = lambda new, old: jnp.where(success, new, old)  # noqa: E731
  return FitResult(
    params=jax.tree.map(keep, params, init),
    loss=keep(loss, initial_loss),
    reprojection=keep(reproj, reproj0),
    joint_error_px=keep(err, err0),
    success=success,
    initial_loss=initial_loss,
    trace=trace,
  )


def camera_fitting_loss(
  body, keypoints, params: FitParams, tz_init, options: SmplifyOptions = SmplifyOptions()
) -> Float[Array, ""]:
  """SPIN's camera-stage objective (smplify/losses.py camera_fitting_loss) of one example:

      sum over the 4 torso joints of |proj - keypoint|^2 + depth_w^2 (t_z - t_z,init)^2,

  the torso being OpenPose's (hips, shoulders) when all four are detected, else the annotated
  one. Unannotated torso joints are left out (SPIN assumes all four exist)."""
  problem = _Problem(body, None, keypoints, options)
  p = dict(global_orient=params.global_orient, cam_t=params.cam_t)
  return jnp.sum(problem.camera_residuals(p, problem.body_frame_joints(params), tz_init) ** 2)


def body_fitting_loss(
  body,
  prior,
  keypoints,
  params: FitParams,
  options: SmplifyOptions = SmplifyOptions(),
  stage: int = 0,
) -> Float[Array, ""]:
  """SPIN's body-stage objective (smplify/losses.py body_fitting_loss) of one example:

      sum_j c_j^2 sum_xy rho_sigma(proj_j - x_j) + w_pose^2 E_gmm(theta) + w_angle^2 E_angle
      + w_shape^2 |beta|^2,

  rho the Geman-McClure function, c the confidences with `options.ignored_joints` zeroed, the
  weights those of `options.stages[stage]`."""
  problem = _Problem(body, prior, keypoints, options)
  p = dict(global_orient=params.global_orient, body_pose=params.body_pose, betas=params.betas)
  radii = problem.sphere_radii(params.betas) if options.interpenetration_weight else None
  return problem.body_loss(p, params.cam_t, options.stages[stage], radii)


def fitting_loss(
  body, prior, keypoints, params: FitParams, options: SmplifyOptions = SmplifyOptions()
) -> Float[Array, ""]:
  """SPIN's per-sample fitting loss (get_fitting_loss averaged over the 49 joints), used to
  decide whether a new fit beats a stored one. Confidences are not modified."""
  return jnp.mean(_Problem(body, prior, keypoints, options).reprojection(params)[0])


def fit_batch(
  body, prior, keypoints, init: FitParams, options: SmplifyOptions = SmplifyOptions()
) -> FitResult:
  """`fit_one` over a leading batch axis of keypoints and init (options are static)."""
  return jax.vmap(lambda k, i: fit_one(body, prior, k, i, options))(keypoints, init)


def similar_triangles_translation(
  body: smpl_jax.BodyModel,
  keypoints: Float[Array, "49 3"],
  init: FitParams,
  options: SmplifyOptions = SmplifyOptions(),
) -> Float[Array, "3"]:
  """Camera translation for standalone use (original SMPLify): depth from the ratio of 3D to 2D
  torso lengths (shoulder-hip pairs), x/y from the torso centroids. `init.cam_t` is ignored."""
  problem = _Problem(body, prior=None, keypoints=keypoints, options=options)
  joints = problem.joints(init.global_orient, init.body_pose, init.betas)
  torso, w = problem.torso, problem.torso_w
  j3, j2 = joints[torso], problem.xy[torso]
  pairs = ((0, 2), (1, 3))  # right hip - right shoulder, left hip - left shoulder
  len3 = jnp.stack([jnp.linalg.norm(j3[a, :2] - j3[b, :2]) for a, b in pairs])
  len2 = jnp.stack([jnp.linalg.norm(j2[a] - j2[b]) for a, b in pairs])
  pw = jnp.stack([w[a] * w[b] for a, b in pairs])
  ratio = jnp.sum(pw * len3) / jnp.maximum(jnp.sum(pw * len2), 1e-6)
  tz = options.focal_length * ratio
  wsum = jnp.maximum(jnp.sum(w), 1e-6)
  c3 = jnp.sum(w[:, None] * j3, axis=0) / wsum
  c2 = jnp.sum(w[:, None] * j2, axis=0) / wsum
  txy = (c2 - problem.center) * (tz + c3[2]) / options.focal_length - c3[:2]
  t = jnp.concatenate([txy, tz[None]])
  return jnp.where(jnp.sum(pw) > 0, t, jnp.nan)
