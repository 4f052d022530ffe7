"""SMPL from one photo: the regressor, optionally refined by SMPLify on 2D keypoints.

    python -m spin_jax.demo --img photo.jpg --openpose photo_keypoints.json --fit
    python -m spin_jax.demo --img photo.jpg --bbox 120,40,300,620 --workdir outputs/train
    python -m spin_jax.demo --img photo.jpg --openpose kp.json --no_network   # SMPLify alone
    python -m spin_jax.demo --img photo.jpg --bbox box.json --spin_checkpoint model_checkpoint.pt \
      --body_model data/smpl/SMPL_NEUTRAL.pkl   # SPIN's released network (needs torch)

The person is cropped by SPIN's demo rules (SPIN_SPEC 9): from an OpenPose JSON, the centre is
the mean of the keypoints with confidence > 0.2 and the box side 1.2 x their larger extent; from
a bounding box [x, y, w, h] (a JSON file {"bbox": [...]}, as SPIN's demo reads, or "x,y,w,h"),
its centre and larger side; with neither, the whole image. A box that misses the photo is
refused and one mostly outside it is warned about (the crop is black outside the photo). The
regressor (a training run's newest checkpoint, --workdir) predicts SMPL and a camera for the
crop; --fit then runs SPIN's SMPLify (100 + 100 Adam steps) from that prediction on the OpenPose
keypoints. --no_network starts the fit from the regressor's mean parameters instead of a
prediction. Any photo size works, down to 1 x 1 px: the crop is resized to the network's input
either way (a tiny photo gives a blurry crop, not an error), and a mesh that covers no pixel
centre leaves the photo in the overlay uncovered.

Writes, in --out: `<name>_mesh.png` (the mesh over the photo, and the mesh turned 90 degrees
about the vertical axis: a side view; photos larger than --max_side = 1920 px on their long
side are drawn scaled down to it, so memory stays bounded), `<name>.obj` (camera frame,
metres), and `<name>_params.json` (pose as 24 axis-angle vectors, betas, camera translation,
and the camera that projects the mesh into the photo: focal length and principal point in the
photo's own pixels, whatever the picture's size).
"""

import argparse
import dataclasses
import io
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

import smpl_jax
from fitting import data_io, priors, smplify
from smpl_jax import camera, files, render, rotations
from smpl_jax import io as smpl_io
from smpl_jax.joints import OPENPOSE
from spin_jax.data import geometry

CONFIDENCE = 0.2  # SPIN's demo: keypoints above this define the crop


@dataclasses.dataclass(frozen=True)
class Crop:
  center: tuple[float, float]  # image pixels (continuous: pixel (u, v) covers [u, u+1))
  scale: float  # box side / 200 px

  @property
  def side(self) -> float:
    return 200.0 * self.scale


def crop_from_keypoints(kp: np.ndarray) -> Crop:
  """(25, 3) OpenPose keypoints in image pixels -> SPIN's demo crop."""
  vis = kp[:, 2] > CONFIDENCE
  if vis.sum() < 2:
    raise ValueError(
      f"only {int(vis.sum())} keypoint(s) have confidence > {CONFIDENCE}: too few to place "
      "the person; give --bbox instead"
    )
  pts = kp[vis, :2]
  extent = pts.max(0) - pts.min(0)
  if not extent.max() > 0:
    raise ValueError("the confident keypoints all coincide; give --bbox instead")
  return Crop(tuple(pts.mean(0).tolist()), float(1.2 * extent.max() / 200.0))


def crop_from_bbox(bbox) -> Crop:
  x, y, w, h = (float(v) for v in bbox)
  if not np.all(np.isfinite([x, y, w, h])):
    raise ValueError(f"bounding box {bbox}: x, y, w and h must be finite numbers")
  if not (w > 0 and h > 0):
    raise ValueError(f"bounding box {bbox}: width and height must be positive ([x, y, w, h])")
  return Crop((x + w / 2.0, y + h / 2.0), max(w, h) / 200.0)


def read_bbox(arg: str):
  """A JSON file holding {"bbox": [x, y, w, h]} (SPIN's demo format) or "x,y,w,h"."""
  path = Path(arg)
  if path.is_file():
    try:
      bbox = json.loads(path.read_text())["bbox"]
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(f'{path} is not a JSON file holding {{"bbox": [x, y, w, h]}}') from err
  else:
    try:
      bbox = [float(v) for v in arg.split(",")]
    except ValueError as err:
      raise ValueError(f"--bbox {arg!r} is neither a file nor 'x,y,w,h'") from err
  if len(bbox) != 4:
    raise ValueError(f"bounding box {bbox} must have 4 numbers: x, y, w, h")
  return bbox


def check_crop_in_image(crop: Crop, size: tuple[int, int]) -> None:
  """Refuses a crop box that does not overlap the photo (the network would see a black
  square) and warns when most of it lies outside."""
  w, h = size
  half = crop.side / 2.0
  (cx, cy) = crop.center
  ix = max(0.0, min(cx + half, w) - max(cx - half, 0.0))
  iy = max(0.0, min(cy + half, h) - max(cy - half, 0.0))
  box = f"the person box (centre {cx:.1f}, {cy:.1f}, side {crop.side:.1f} px)"
  if ix * iy <= 0:
    raise ValueError(f"{box} lies outside the {w} x {h} photo; check --bbox or the keypoints")
  inside = ix * iy / crop.side**2
  if inside < 0.5:
    print(f"warning: only {100 * inside:.0f} % of {box} lies inside the {w} x {h} photo")


def crop_image(image: Image.Image, crop: Crop, res: int) -> np.ndarray:
  """(res, res, 3) uint8: the crop's box resized to the network's input (black outside)."""
  affine = geometry.crop_affine(crop.center, crop.side, res)
  return geometry.warp(image, affine, res)


def photo_camera(crop: Crop) -> tuple[float, tuple[float, float]]:
  """(focal, principal point) in photo pixels of SPIN's crop camera (focal 5000 on 224 px)."""
  return camera.FOCAL_LENGTH * crop.side / camera.IMG_RES, crop.center


# -- estimates ------------------------------------------------------------------------------------


def network_estimate(
  workdir: str | None, image: Image.Image, crop: Crop, source=None
) -> smplify.FitParams:
  """The regressor's estimate for the crop: a training run's newest checkpoint, or `source`
  (an `eval.Source`, e.g. SPIN's released network) when given."""
  from spin_jax import eval as eval_lib

  source = source or eval_lib.checkpoint_source(workdir)
  pixels = crop_image(image, crop, source.img_res)[None]
  est = source.estimate({"image": pixels})
  aa = rotations.rotmat_to_aa(est.rotmat[0])
  return smplify.FitParams(aa[0], aa[1:].reshape(69), est.betas[0], est.cam_t[0])


def mean_estimate() -> smplify.FitParams:
  """The regressor's starting point: mean pose and camera, zero betas."""
  from spin_jax.model import open_mean_params

  mp = open_mean_params()
  aa = rotations.rot6d_to_aa(jnp.asarray(mp.pose6d).reshape(24, 6))
  cam_t = camera.weak_perspective_to_translation(jnp.asarray(mp.cam)[None])[0]
  return smplify.FitParams(aa[0], aa[1:].reshape(69), jnp.zeros(10), cam_t)


def refine(body, prior, kp25: np.ndarray, crop: Crop, init: smplify.FitParams):
  """SPIN's SMPLify on the OpenPose keypoints (in the 224 px crop frame) from `init`.

  The start's camera is first re-estimated from the keypoints (SPIN's least-squares camera on
  the start's joints), as SPIN scores its fits: a photo is not the network's training data, and
  a wrong depth would hold the camera stage back (its depth term keeps the start's depth).
  Each torso joint of the camera stage comes from OpenPose (`torso_per_joint`), since a photo
  has no annotated rows.
  """
  kp = np.zeros((49, 3), np.float32)
  kp[OPENPOSE] = data_io.to_crop(kp25[None], np.asarray([crop.center]), np.asarray([crop.scale]))[
    0
  ]
  options = smplify.SmplifyOptions(torso_per_joint=True)

  @jax.jit
  def fit(kp, init):
    pose = jnp.concatenate([init.global_orient, init.body_pose])
    joints = smpl_jax.forward_joints(body, init.betas, pose[:3], pose[3:]).joint_sets["spin49"]
    cam_t = camera.estimate_translation(joints[OPENPOSE], kp[OPENPOSE, :2], kp[OPENPOSE, 2])
    cam_t = jnp.where(jnp.isfinite(cam_t), cam_t, init.cam_t)
    return smplify.fit_one(body, prior, kp, dataclasses.replace(init, cam_t=cam_t), options)

  result = fit(jnp.asarray(kp), init)
  vis = kp[:, 2] > 0
  err = np.asarray(result.joint_error_px)[vis].mean() * crop.side / camera.IMG_RES
  return result, float(err)


# -- pictures and files ---------------------------------------------------------------------------


def side_view(vertices: np.ndarray, size: tuple[int, int]):
  """The mesh turned 90 degrees about the vertical axis, framed to fill a (H, W) panel:
  (vertices, focal, principal point)."""
  a = np.pi / 2
  rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  v = (vertices - vertices.mean(0)) @ rot.T
  lo, hi = v.min(0), v.max(0)
  v = v - (lo + hi) / 2 + [0.0, 0.0, 20.0]  # far away: almost orthographic
  h, w = size
  focal = 0.9 * 20.0 * min(w / (hi[0] - lo[0]), h / (hi[1] - lo[1]))
  return v, focal, (w / 2.0, h / 2.0)


MAX_SIDE = 1920  # pictures are drawn at most this many pixels on the photo's long side


def draw(
  image: Image.Image, vertices, faces, focal, center, kp25=None, max_side: int = MAX_SIDE
) -> Image.Image:
  """[photo with the mesh blended over it | side view on white], side by side, each panel the
  photo's size or, for a larger photo, scaled down to `max_side` pixels on its long side (the
  camera and keypoints scaled with it): memory stays bounded whatever the photo's size."""
  s = min(1.0, max_side / max(image.size))
  if s < 1.0:
    w, h = image.size
    size = (max(1, math.floor(w * s + 1e-9)), max(1, math.floor(h * s + 1e-9)))
    # The source box is `size / s`, not the whole photo: one scale for both axes, exactly,
    # whatever the rounding (at most a pixel of the photo's edge is left out).
    box = (0.0, 0.0, size[0] / s, size[1] / s)
    image = image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    focal, center = focal * s, (center[0] * s, center[1] * s)
    if kp25 is not None:
      kp25 = np.concatenate([kp25[:, :2] * s, kp25[:, 2:]], 1)
  w, h = image.size
  photo = np.asarray(image)  # uint8; only the covered pixels are blended in float
  rgb, mask = render.render(vertices, faces, focal, center, (h, w), color=(0.55, 0.7, 0.95))
  over = np.array(photo)
  over[mask] = (0.35 * photo[mask] + 0.65 * rgb[mask]).round().astype(np.uint8)
  del rgb
  sv, sf, sc = side_view(vertices, (h, w))
  side, _ = render.render(
    sv, faces, sf, sc, (h, w), color=(0.55, 0.7, 0.95), background=(1.0, 1.0, 1.0)
  )
  left = Image.fromarray(over)
  if kp25 is not None:
    d = ImageDraw.Draw(left)
    r = max(2.0, 0.006 * max(w, h))
    for x, y, c in kp25:
      x, y = x - 0.5, y - 0.5  # PIL draws with pixel centres at integers
      if c > 0:
        d.ellipse([x - r, y - r, x + r, y + r], outline=(255, 40, 40), width=2)
  out = Image.new("RGB", (2 * w, h))
  out.paste(left, (0, 0))
  out.paste(Image.fromarray(side), (w, 0))
  return out


def write_png(path: Path, image: Image.Image) -> None:
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  files.write_bytes_atomic(path, buf.getvalue())


def run(
  img: str,
  out: str,
  openpose: str | None = None,
  bbox: str | None = None,
  workdir: str | None = "outputs/train",
  fit: bool = False,
  body_model: str = "",
  max_side: int = MAX_SIDE,
  spin_checkpoint: str | None = None,
) -> dict:
  if not max_side >= 1:
    raise ValueError(f"--max_side {max_side}: the picture needs at least 1 pixel a side")
  image_path = Path(img)
  try:
    with Image.open(image_path) as im:
      image = im.convert("RGB")
  except Image.DecompressionBombError as err:  # not an OSError
    raise ValueError(
      f"cannot read the photo {image_path}: {err} (PIL's limit, PIL.Image.MAX_IMAGE_PIXELS, "
      "guards against decompression bombs; raise it if you trust the file)"
    ) from err
  except (OSError, ValueError) as err:
    raise ValueError(f"cannot read the photo {image_path}: {err}") from err
  kp25 = None
  if openpose:
    try:
      kp25 = data_io.read_openpose_person(openpose)
    except ValueError as err:
      raise ValueError(f"{openpose}: {err}") from err
    # OpenPose gives pixel indices; this project's pixels are continuous (centre at + 0.5).
    kp25[:, :2] += np.where(kp25[:, 2:] > 0, geometry.INDEX_TO_CONTINUOUS, 0.0)
  if bbox:
    crop = crop_from_bbox(read_bbox(bbox))
  elif kp25 is not None:
    crop = crop_from_keypoints(kp25)
  else:
    w, h = image.size
    crop = Crop((w / 2.0, h / 2.0), max(w, h) / 200.0)
  check_crop_in_image(crop, image.size)
  spin_source = None
  if spin_checkpoint:  # SPIN's released network instead of a training run
    from spin_jax import eval as eval_lib

    workdir = None
    spin_source = eval_lib.spin_checkpoint_source(spin_checkpoint, body_model)
  network = bool(workdir or spin_checkpoint)
  if (fit or not network) and kp25 is None:
    raise ValueError("SMPLify needs 2D keypoints: give --openpose with --fit / --no_network")

  if workdir:
    if not (Path(workdir) / "checkpoints").is_dir():
      raise FileNotFoundError(
        f"no trained network in {workdir} (no checkpoints/): train one with the README's main "
        "command, point --workdir at a run, or use --no_network with --openpose"
      )
    body_model = (
      body_model or json.loads((Path(workdir) / "config.json").read_text())["body_model"]
    )
  body = smpl_jax.load_model(body_model or None)
  if network:
    params = network_estimate(workdir, image, crop, spin_source)
  else:
    params = mean_estimate()
  info = {"estimate": "network" if network else "mean parameters"}
  if spin_checkpoint:
    info["spin_checkpoint"] = str(spin_checkpoint)
  if fit or not network:
    result, err_px = refine(body, priors.load_gmm(), kp25, crop, params)
    info["smplify"] = {
      "success": bool(result.success),
      "loss": float(result.loss),
      "mean_keypoint_error_px": err_px,
    }
    params = result.params  # on failure: the start, with the camera from the keypoints
    if not bool(result.success):
      print("SMPLify did not improve on its start; keeping the start")
  pose = jnp.concatenate([params.global_orient, params.body_pose])
  verts = smpl_jax.forward(body, params.betas, pose[:3], pose[3:]).vertices
  verts = np.asarray(verts + params.cam_t, np.float64)
  if not np.all(np.isfinite(verts)):
    raise FloatingPointError("the estimate is not finite; nothing written")
  focal, center = photo_camera(crop)
  faces = np.asarray(body.faces)
  picture = draw(image, verts, faces, focal, center, kp25, max_side)

  out_dir = Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = image_path.stem
  write_png(out_dir / f"{stem}_mesh.png", picture)
  smpl_io.write_obj(out_dir / f"{stem}.obj", verts, faces)
  params_out = {
    **info,
    "pose_axis_angle": np.asarray(pose).reshape(24, 3).round(6).tolist(),
    "betas": np.asarray(params.betas).round(6).tolist(),
    "cam_t": np.asarray(params.cam_t).round(6).tolist(),
    "focal_px": focal,
    "principal_point_px": list(center),
    "crop": {"center": list(crop.center), "scale": crop.scale},
    "body_model": body_model or "open",
  }
  files.write_text_atomic(out_dir / f"{stem}_params.json", json.dumps(params_out, indent=1))
  print(f"wrote {out_dir / f'{stem}_mesh.png'}, {stem}.obj, {stem}_params.json")
  return params_out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--img", required=True, help="the photo")
  ap.add_argument("--openpose", help="OpenPose JSON (BODY_25) of the photo")
  ap.add_argument("--bbox", help='bounding box: JSON file {"bbox": [x, y, w, h]} or "x,y,w,h"')
  ap.add_argument("--workdir", default="outputs/train", help="training run (newest checkpoint)")
  ap.add_argument("--no_network", action="store_true", help="fit from the mean parameters")
  ap.add_argument(
    "--spin_checkpoint", help="SPIN's model_checkpoint.pt instead of --workdir (needs torch)"
  )
  ap.add_argument("--fit", action="store_true", help="refine with SMPLify (needs --openpose)")
  ap.add_argument("--body_model", default="", help="SMPL .pkl/.npz (default: the open model)")
  ap.add_argument("--out", default="outputs/demo")
  ap.add_argument(
    "--max_side", type=int, default=MAX_SIDE, help="the picture's long side at most (px)"
  )
  args = ap.parse_args(argv)
  if args.no_network and args.spin_checkpoint:
    raise SystemExit("error: --no_network and --spin_checkpoint exclude each other")
  try:
    return run(
      args.img,
      args.out,
      args.openpose,
      args.bbox,
      None if args.no_network else args.workdir,
      args.fit,
      args.body_model,
      args.max_side,
      args.spin_checkpoint,
    )
  except (ValueError, FileNotFoundError) as err:
    raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
  main()
