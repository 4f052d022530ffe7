"""Reading 2D keypoints for the dataset fitter, and the on-disk format of fits.

Inputs become SPIN's 49 keypoints in crop pixels (224 px crop; SPIN_SPEC 7.3, 8):
* SPIN dataset npz files: `center` (N, 2), `scale` (N,) (person box side / 200 px), `part`
  (N, 24, 3) ground-truth keypoints and/or `openpose` (N, 25, 3) detections, in image pixels.
  Points map to the crop by x_crop = (x - cx) * 224 / (200 s) + 112 (SPIN's +-1 offsets and
  integer truncation, SPIN_SPEC 12.6, are not reproduced).
* Folders of OpenPose JSON files (`people[k].pose_keypoints_2d`, BODY_25): the person with the
  highest summed confidence; the box is the keypoints' bounding box enlarged 1.2x, as SPIN's
  preprocessing does. Only the 25 OpenPose rows are filled.

Every example carries a `reason`: empty when it can be fitted, otherwise why not (the fitter then
records a failure for it and goes on).

Fits files (`write_fits`) hold pose (N, 72) axis-angle, betas (N, S), cam_t (N, 3), loss (N,),
joint_error_px (N, 49), success (N,), reason (N,), and `source` / `index` naming each input
example, with `source_sha256`, the sha256 of that input file, so that a fits file is only used
for the data it was made from; the trainer loads them as its initial fits dictionary.
"""

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from smpl_jax.files import file_sha256
from smpl_jax.joints import GT24, GT_TORSO, OP_TORSO, OPENPOSE

CROP = 224


@dataclasses.dataclass
class Examples:
  keypoints: np.ndarray  # (N, 49, 3) crop pixels
  reason: np.ndarray  # (N,) str, "" when fittable
  source: np.ndarray  # (N,) str, file each example came from
  index: np.ndarray  # (N,) int, index within that file
  source_sha256: np.ndarray  # (N,) str, sha256 of that file's bytes (its identity)

  def __len__(self):
    return len(self.keypoints)


def to_crop(points: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """(N, K, 3) image-pixel keypoints to crop pixels; confidences unchanged, zero rows stay 0."""
  out = points.astype(np.float32).copy()
  side = 200.0 * scale.reshape(-1, 1, 1)
  out[..., :2] = (points[..., :2] - center[:, None, :]) * (CROP / side) + CROP / 2.0
  out[..., :2] *= points[..., 2:3] > 0
  return out


def check_examples(kp: np.ndarray) -> np.ndarray:
  """Per-example reason why it cannot be fitted ("" if it can); NaN rows count as missing."""
  reasons = np.full(len(kp), "", dtype=object)
  finite = np.all(np.isfinite(kp), axis=-1)
  conf = np.where(finite, kp[..., 2], 0.0)
  xy = np.where(finite[..., None], kp[..., :2], 0.0)
  visible = conf > 0
  inside = visible & np.all((xy >= 0) & (xy <= CROP), axis=-1)
  # Each torso slot (right hip, left hip, right shoulder, left shoulder) is filled from OpenPose
  # if detected, else from the annotation (the standalone fitter's rule); similar triangles
  # then needs a hip-shoulder pair, which also gives the camera stage >= 2 joints.
  t = visible[:, list(OP_TORSO)] | visible[:, list(GT_TORSO)]
  torso_ok = (t[:, 0] & t[:, 2]) | (t[:, 1] & t[:, 3])
  for i in range(len(kp)):
    if not finite[i].any():
      reasons[i] = "keypoints are all NaN or infinite"
    elif not visible[i].any():
      reasons[i] = "no keypoint has a positive confidence"
    elif not inside[i].any():
      reasons[i] = "the person lies entirely outside the crop (check center / scale)"
    elif not torso_ok[i]:
      reasons[i] = "too few torso joints for the camera stage (need a visible hip-shoulder pair)"
  return reasons.astype(str)


def _examples(kp, reasons, source, n, sha256):
  return Examples(
    kp.astype(np.float32),
    reasons.astype(str),
    np.full(n, str(source)),
    np.arange(n),
    np.full(n, sha256),
  )


def _box_reasons(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """Per-row reason why a crop box is unusable ("" if it is fine)."""
  reasons = np.full(len(scale), "", dtype=object)
  for i in range(len(scale)):
    if not np.all(np.isfinite(center[i])):
      reasons[i] = f"center is {center[i].tolist()}: it must be a finite pixel position"
    elif not (np.isfinite(scale[i]) and scale[i] > 0):
      reasons[i] = (
        f"scale is {float(scale[i])}: SPIN's scale is the person box side / 200 px and must "
        "be positive and finite"
      )
  return reasons


def read_spin_npz(path: str | os.PathLike) -> Examples:
  path = Path(path)
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
      arrays = {k: d[k] for k in ("center", "scale", "part", "openpose") if k in d.files}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
    raise ValueError(f"{path} is not a readable SPIN npz file ({err}).") from err
  for key in ("center", "scale"):
    if key not in arrays:
      raise ValueError(f"{path}: SPIN npz files need '{key}' (and 'part' and/or 'openpose').")
  if "part" not in arrays and "openpose" not in arrays:
    raise ValueError(f"{path}: no keypoints: SPIN npz files need 'part' and/or 'openpose'.")
  for key in ("center", "scale", "part", "openpose"):
    a = arrays.get(key)
    if a is not None and not (np.issubdtype(a.dtype, np.number) and a.ndim >= 1):
      raise ValueError(
        f"{path}: '{key}' is a {a.ndim}-d array of {a.dtype}; expected numbers of shape "
        f"{dict(center='(N, 2)', scale='(N,)', part='(N, 24, 3)', openpose='(N, 25, 3)')[key]}."
      )
  n = len(arrays["center"])
  if arrays["center"].shape != (n, 2) or arrays["scale"].reshape(-1).shape != (n,):
    raise ValueError(
      f"{path}: center has shape {arrays['center'].shape} and scale "
      f"{arrays['scale'].shape}; expected (N, 2) and (N,)."
    )
  center = arrays["center"].astype(np.float64)
  scale = arrays["scale"].reshape(-1).astype(np.float64)
  reasons = _box_reasons(center, scale)
  good = reasons == ""
  center = np.where(good[:, None], center, 0.0)  # bad boxes: no keypoints, not fitted
  scale = np.where(good, scale, 1.0)
  kp = np.zeros((n, 49, 3), np.float32)
  for key, rows, width in (("openpose", OPENPOSE, 25), ("part", GT24, 24)):
    if key not in arrays:
      continue
    a = arrays[key]
    if a.shape != (n, width, 3):
      reasons[:] = f"{key} has shape {a.shape}, expected ({n}, {width}, 3)"
      continue
    kp[:, rows] = to_crop(a, center, scale) * good[:, None, None]
  checked = check_examples(kp)
  reasons = np.where(reasons == "", checked, reasons)
  return _examples(kp, reasons, path.name, n, file_sha256(path))


def read_openpose_person(path: str | os.PathLike) -> np.ndarray:
  """BODY_25 keypoints (25, 3) in image pixels of the most confident person of one OpenPose JSON
  file (missing or NaN keypoints have confidence 0); ValueError saying why there is none."""
  try:
    people = json.loads(Path(path).read_text()).get("people", [])
    poses = [np.asarray(p["pose_keypoints_2d"], np.float64).reshape(25, 3) for p in people]
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
    raise ValueError(f"malformed OpenPose file: {type(err).__name__}: {err}") from err
  if not poses:
    raise ValueError("no person detected")
  best = max(poses, key=lambda p: np.nansum(p[:, 2]))
  best = np.where(np.all(np.isfinite(best), axis=1, keepdims=True), best, 0.0)  # NaN: missing
  if not (best[:, 2] > 0).any():
    raise ValueError("no keypoint has a positive confidence")
  return best


def read_openpose_dir(path: str | os.PathLike) -> Examples:
  """One example per *.json file (sorted by name); unreadable files become failures."""
  path = Path(path)
  files = sorted(path.glob("*.json"))
  if not files:
    raise ValueError(f"{path} holds no OpenPose .json files.")
  kp = np.zeros((len(files), 49, 3), np.float32)
  reasons = np.full(len(files), "", dtype=object)
  for i, f in enumerate(files):
    try:
      best = read_openpose_person(f)
    except ValueError as err:
      reasons[i] = str(err)
      continue
    vis = best[:, 2] > 0
    lo, hi = best[vis, :2].min(0), best[vis, :2].max(0)
    center = (lo + hi) / 2
    scale = 1.2 * max(hi - lo) / 200.0
    kp[i, OPENPOSE] = to_crop(best[None], center[None], np.asarray([max(scale, 1e-3)]))[0]
  checked = check_examples(kp)
  reasons = np.where(reasons == "", checked, reasons)
  ex = _examples(kp, reasons, path.name, len(files), "")
  ex.source = np.asarray([f"{path.name}/{f.name}" for f in files])
  ex.source_sha256 = np.asarray([file_sha256(f) for f in files])
  ex.index = np.zeros(len(files), np.int64)
  return ex


def read_inputs(paths) -> Examples:
  parts = []
  for p in paths:
    p = Path(p)
    if p.is_dir():
      parts.append(read_openpose_dir(p))
    elif p.is_file():
      parts.append(read_spin_npz(p))
    else:
      raise FileNotFoundError(f"input {p} does not exist.")
  return Examples(
    *(np.concatenate([getattr(e, f.name) for e in parts]) for f in dataclasses.fields(Examples))
  )


FIT_KEYS = (
  "pose",
  "betas",
  "cam_t",
  "loss",
  "joint_error_px",
  "success",
  "reason",
  "source",
  "index",
)
OPTIONAL_FIT_KEYS = ("source_sha256",)  # absent in fits files written before it was recorded


def read_fits(path: str | os.PathLike) -> dict[str, np.ndarray]:
  with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
    missing = [k for k in FIT_KEYS if k not in d.files]
    if missing:
      raise ValueError(f"{path} is not a fits file (missing {missing}).")
    return {k: d[k] for k in d.files}
