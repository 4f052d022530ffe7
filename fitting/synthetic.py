"""Synthetic 2D-keypoint data from a body model, in SPIN's conventions.

Bodies get poses from the joint-limit sampler (scaled towards neutral), betas ~ N(0, 1), a
global orientation facing the camera (SPIN's camera looks down +z with y down, so a body facing
it has global_orient close to (pi, 0, 0)), and a camera translation at SPIN's scale (focal
5000 px on a 224 px crop puts a standing person about 45-55 m away). Keypoints are the model's
SPIN 49 joints projected into the crop; OpenPose-like rows get detector-like noise, confidences
and dropout, ground-truth rows are exact with visibility 1.

`write_spin_npz` stores such a set as a SPIN dataset file (`imgname`, `center`, `scale`, `part`,
`openpose`, `pose`, `shape`, `has_smpl`), with keypoints in original-image pixels.
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import smpl_jax
from fitting import pose_sampler
from fitting.smplify import FitParams
from smpl_jax import camera
from smpl_jax.files import write_npz_atomic
from smpl_jax.joints import GT24, OPENPOSE

CROP = camera.IMG_RES


def sample_params(n: int, num_betas: int = 10, seed: int = 0, pose_scale: float = 0.5):
  """Ground-truth FitParams for n bodies (numpy float32)."""
  rng = np.random.default_rng(seed)
  body = pose_sampler.sample_body_poses(n, seed=seed + 1) * pose_scale
  go = np.zeros((n, 3))
  go[:, 0] = np.pi
  go += rng.normal(scale=0.25, size=(n, 3))
  cam_t = np.stack(
    [rng.normal(scale=0.15, size=n), rng.normal(scale=0.15, size=n), rng.uniform(42, 58, n)], 1
  )
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  return FitParams(
    global_orient=f32(go),
    body_pose=f32(body),
    betas=f32(rng.normal(size=(n, num_betas))),
    cam_t=f32(cam_t),
  )


def project_spin49(body: smpl_jax.BodyModel, params: FitParams, batch: int = 1024) -> np.ndarray:
  """(n, 49, 2) crop-pixel projections of the SPIN joints (camera as in SPIN's SMPLify)."""
  fn = jax.jit(smpl_jax.forward_joints_batch)
  out = []
  center = jnp.full((2,), CROP / 2.0)
  for s in range(0, len(params.betas), batch):
    sl = slice(s, s + batch)
    j = fn(body, params.betas[sl], params.global_orient[sl], params.body_pose[sl])
    pts = camera.perspective_projection(
      j.joint_sets["spin49"], params.cam_t[sl], camera.FOCAL_LENGTH, center
    )
    out.append(np.asarray(pts))
  return np.concatenate(out)


def openpose_detections(
  rng: np.random.Generator, shape: tuple[int, ...], noise_px: float, dropout: float
) -> tuple[np.ndarray, np.ndarray]:
  """Detector-like errors of the 25 OpenPose rows of `shape` examples: pixel offsets
  (*shape, 25, 2) ~ N(0, noise_px), and confidences (*shape, 25) ~ U(0.3, 1), each 0 (not
  detected) with probability `dropout`. Undetected rows get zero coordinates, as in OpenPose
  files; that is the caller's to apply, after any further reason to drop a row."""
  offsets = rng.normal(scale=noise_px, size=(*shape, 25, 2))
  conf = rng.uniform(0.3, 1.0, (*shape, 25)) * (rng.random((*shape, 25)) >= dropout)
  return offsets, conf


def keypoints_from_projection(
  proj: np.ndarray,
  seed: int = 0,
  openpose_noise_px: float = 2.0,
  openpose_dropout: float = 0.1,
  defined: np.ndarray | None = None,
) -> np.ndarray:
  """(n, 49, 3) keypoints: OpenPose rows noisy with confidences in [0.3, 1] and dropout; the
  ground-truth rows exact, visibility 1 (0 where the model cannot define the joint)."""
  rng = np.random.default_rng(seed)
  n = len(proj)
  kp = np.zeros((n, 49, 3), np.float32)
  kp[:, :, :2] = proj
  offsets, conf = openpose_detections(rng, (n,), openpose_noise_px, openpose_dropout)
  kp[:, OPENPOSE, :2] += offsets
  kp[:, OPENPOSE, 2] = conf
  kp[:, OPENPOSE, :2] *= kp[:, OPENPOSE, 2:3] > 0  # undetected: zeros, as OpenPose files have
  kp[:, GT24, 2] = 1.0
  if defined is not None:
    kp[:, :, 2] *= defined
  return kp


def write_spin_npz(
  path: str | os.PathLike, keypoints: np.ndarray, params: FitParams, seed: int = 0
) -> None:
  """Stores crop keypoints as a SPIN dataset file: each example gets a random person box
  (`center`, `scale` = box side / 200) in a 1920x1080 frame, keypoints mapped into it."""
  rng = np.random.default_rng(seed)
  n = len(keypoints)
  scale = rng.uniform(1.5, 4.0, n).astype(np.float32)
  center = np.stack([rng.uniform(400, 1520, n), rng.uniform(300, 780, n)], 1).astype(np.float32)
  img = keypoints.copy()
  side = (200.0 * scale)[:, None]
  img[:, :, :2] = (keypoints[:, :, :2] - CROP / 2.0) * (side / CROP)[..., None] + center[:, None]
  img[:, :, :2] *= keypoints[:, :, 2:3] > 0
  write_npz_atomic(
    path,
    imgname=np.asarray([f"synthetic/{i:07d}.jpg" for i in range(n)]),
    center=center,
    scale=scale,
    openpose=img[:, OPENPOSE],
    part=img[:, GT24],
    pose=np.concatenate([params.global_orient, params.body_pose], 1),
    shape=params.betas[:, :10],
    has_smpl=np.ones(n, np.float32),
  )


def make_dataset(body, n: int, seed: int = 0, **noise):
  """Ground truth and (n, 49, 3) crop keypoints for n synthetic bodies."""
  params = sample_params(n, num_betas=min(10, body.num_betas), seed=seed)
  defined = np.asarray(body.joint_set("spin49").defined, np.float32)
  kp = keypoints_from_projection(project_spin49(body, params), seed=seed, defined=defined, **noise)
  return params, kp


def main(argv=None):
  """python -m fitting.synthetic --num 10000 --out outputs/synthetic_keypoints.npz"""
  import argparse

  ap = argparse.ArgumentParser(description="Write a synthetic SPIN-format keypoint dataset.")
  ap.add_argument("--num", type=int, default=10000)
  ap.add_argument("--out", required=True)
  ap.add_argument("--model", default=None, help="SMPL .pkl/.npz (default: the open model)")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  body = smpl_jax.load_model(args.model)
  params, kp = make_dataset(body, args.num, seed=args.seed)
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  write_spin_npz(args.out, kp, params, seed=args.seed)
  print(f"wrote {args.num} examples to {args.out}")


if __name__ == "__main__":
  main()
