"""SPIN's training losses (SPIN_SPEC 6.3; SPIN's `train/trainer.py`), one pure function each.

Every function takes a batch and returns a scalar; a `mask` (B,) selects the rows a term applies
to, and a term with no selected row is 0, as SPIN's `if len(...) > 0 ... else 0`. Means are over
all elements of the selected rows (torch's `MSELoss()` / `L1Loss()` on the indexed tensors).

    keypoints_2d   SPIN's keypoint_loss: confidence-weighted squared error of the 49 projected
                   joints, normalised [-1, 1] coordinates, OpenPose rows x openpose weight, the
                   ground-truth rows x gt weight
    keypoints_3d   SPIN's keypoint_3d_loss: squared error of the 24 ground-truth joints after
                   centring each set on its hip midpoint, rows with 3D ground truth
    pose, betas    SPIN's smpl_losses: squared error of rotation matrices and betas against the
                   supervising parameters (fits or ground truth), rows where they are valid
    shape          SPIN's shape_loss: per-vertex L1 against the supervising mesh
    camera         exp(-10 s)^2: keeps the weak-perspective scale positive
    total          spin_loss: the weighted sum, times 60 (SPIN_SPEC 6.3)

`defined` masks (49,) or (24,) joints the body model cannot define (SMPL without SPIN's
`J_regressor_extra.npy`): they carry no supervision whatever their confidence says.
"""

import jax.numpy as jnp
from jaxtyping import Bool, Float

from smpl_jax.joints import J24_HIPS
from smpl_jax.typing import Array


def masked_mean(err: Float[Array, "B ..."], mask: Bool[Array, " B"]) -> Float[Array, ""]:
  """Mean over all elements of the rows where `mask` (0 when there are none)."""
  per_row = err.reshape(err.shape[0], -1)
  count = jnp.maximum(jnp.sum(mask), 1) * per_row.shape[1]
  return jnp.sum(per_row * mask[:, None]) / count


def centre_on_hips(joints: Float[Array, "B 24 3"]) -> Float[Array, "B 24 3"]:
  """Joints minus the midpoint of the right and left hip (SPIN's pelvis for 3D losses)."""
  return joints - joints[:, J24_HIPS, :].mean(axis=1, keepdims=True)


def keypoints_2d(
  pred: Float[Array, "B 49 2"],
  target: Float[Array, "B 49 3"],
  openpose_weight: float,
  gt_weight: float,
  defined: Bool[Array, " 49"] | None = None,
) -> Float[Array, ""]:
  """SPIN's 2D keypoint loss: mean over (B, 49, 2) of c_j w_j (pred - target)^2, where c is the
  target's confidence and w is `openpose_weight` on the first 25 joints, `gt_weight` on the
  rest (SPIN: 0 and 1)."""
  w = jnp.concatenate([jnp.full(25, openpose_weight), jnp.full(24, gt_weight)])
  conf = target[..., 2] * w
  if defined is not None:
    conf = jnp.where(defined, conf, 0.0)
  return jnp.mean(conf[..., None] * (pred - target[..., :2]) ** 2)


def keypoints_3d(
  pred: Float[Array, "B 24 3"],
  target: Float[Array, "B 24 4"],
  has_3d: Bool[Array, " B"],
  defined: Bool[Array, " 24"] | None = None,
) -> Float[Array, ""]:
  """SPIN's 3D keypoint loss: both sets centred on their hip midpoint, confidence-weighted squared
  error, mean over (rows with 3D, 24, 3). The centring needs the hips: a model that cannot
  define them cannot be trained with this loss (the trainer refuses it)."""
  conf = target[..., 3]
  if defined is not None:
    conf = jnp.where(defined, conf, 0.0)
  diff = centre_on_hips(pred) - centre_on_hips(target[..., :3])
  return masked_mean(conf[..., None] * diff**2, has_3d)


def pose(
  pred_rotmat: Float[Array, "B 24 3 3"],
  target_rotmat: Float[Array, "B 24 3 3"],
  valid: Bool[Array, " B"],
) -> Float[Array, ""]:
  """SPIN's pose loss: mean squared error of the 24 rotation matrices on valid rows."""
  return masked_mean((pred_rotmat - target_rotmat) ** 2, valid)


def betas(
  pred: Float[Array, "B S"], target: Float[Array, "B S"], valid: Bool[Array, " B"]
) -> Float[Array, ""]:
  """SPIN's shape-coefficient loss: mean squared error on valid rows."""
  return masked_mean((pred - target) ** 2, valid)


def shape(
  pred_vertices: Float[Array, "B V 3"],
  target_vertices: Float[Array, "B V 3"],
  valid: Bool[Array, " B"],
) -> Float[Array, ""]:
  """SPIN's shape loss: mean absolute per-vertex error (metres) on valid rows."""
  return masked_mean(jnp.abs(pred_vertices - target_vertices), valid)


def camera(pred_cam: Float[Array, "B 3"]) -> Float[Array, ""]:
  """SPIN's camera loss: mean of exp(-10 s)^2 over the batch, s the weak-perspective scale."""
  return jnp.mean(jnp.exp(-10.0 * pred_cam[:, 0]) ** 2)


def spin_loss(terms: dict[str, Float[Array, ""]], weights) -> Float[Array, ""]:
  """SPIN's total: scale x (shape w_shape + (2D + 3D) w_kp + pose w_pose + betas w_betas +
  camera). `weights` is a `config.LossOptions` (SPIN: 0, 5, 1, 0.001, scale 60); the shape term
  is read only when its weight is non-zero."""
  total = (
    weights.keypoint * (terms["keypoints_2d"] + terms["keypoints_3d"])
    + weights.pose * terms["pose"]
    + weights.betas * terms["betas"]
    + terms["camera"]
  )
  if weights.shape:
    total = total + weights.shape * terms["shape"]
  return weights.scale * total
