"""A z-buffer triangle rasterizer in vectorised numpy, for meshes seen through a pinhole camera.

`rasterize` returns, per pixel, the nearest face, its barycentric coordinates and its depth;
`render` turns that into a Lambert-shaded image and a silhouette. No OpenGL, no GPU: every
candidate (triangle, pixel) pair inside a triangle's bounding box is tested at once, and the
z-buffer keeps the nearest per pixel by one sort. People at SPIN's crop size (224 px) take a few
milliseconds each on the full open model.

Conventions: camera frame as in `smpl_jax.camera` (x right, y down, z forward, metres); pixel
(u, v) covers [u, u + 1) x [v, v + 1) and is sampled at its centre; depth is camera z,
interpolated perspective-correctly. Faces with a vertex at z <= 0 are dropped.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Fragments:
  """Per-pixel result of rasterization (H, W): face index (-1 = background), barycentric
  coordinates (H, W, 3) of the face's vertices, camera depth (inf = background)."""

  face: np.ndarray
  bary: np.ndarray
  depth: np.ndarray

  @property
  def mask(self) -> np.ndarray:
    return self.face >= 0


def project(vertices: np.ndarray, focal: float, center) -> np.ndarray:
  """(V, 3) camera-frame points -> (V, 3) rows (u, v, z) in pixels and metres."""
  z = vertices[:, 2]
  uv = focal * vertices[:, :2] / z[:, None] + np.asarray(center, np.float64)
  return np.concatenate([uv, z[:, None]], axis=1)


def rasterize(screen: np.ndarray, faces: np.ndarray, height: int, width: int) -> Fragments:
  """Nearest face per pixel for (V, 3) screen-space vertices (u, v, camera z)."""
  screen = np.asarray(screen, np.float64)
  faces = np.asarray(faces, np.int64)
  tri = screen[faces]  # (F, 3, 3)
  keep = np.all(tri[:, :, 2] > 0, axis=1)
  face_ids = np.flatnonzero(keep)
  tri = tri[keep]
  lo = np.floor(tri[:, :, :2].min(axis=1) - 0.5).astype(np.int64)
  hi = np.ceil(tri[:, :, :2].max(axis=1) - 0.5).astype(np.int64)
  lo = np.maximum(lo, 0)
  hi = np.minimum(hi, [width - 1, height - 1])
  span = hi - lo + 1
  count = np.where(np.all(span > 0, axis=1), span[:, 0] * span[:, 1], 0)
  out = Fragments(
    face=np.full((height, width), -1, np.int64),
    bary=np.zeros((height, width, 3)),
    depth=np.full((height, width), np.inf),
  )
  total = int(count.sum())
  if total == 0:
    return out
  # Every (triangle, pixel) pair of each bounding box, flattened.
  owner = np.repeat(np.arange(len(tri)), count)
  offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
  px = lo[owner, 0] + offset % span[owner, 0]
  py = lo[owner, 1] + offset // span[owner, 0]
  p = np.stack([px + 0.5, py + 0.5], axis=1)
  a, b, c = tri[owner, 0, :2], tri[owner, 1, :2], tri[owner, 2, :2]

  def edge(p0, p1, q):
    return (p1[:, 0] - p0[:, 0]) * (q[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (
      q[:, 0] - p0[:, 0]
    )

  area = edge(a, b, c)
  w0, w1, w2 = edge(b, c, p), edge(c, a, p), edge(a, b, p)
  sign = np.sign(area)
  inside = (area != 0) & (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0)
  owner, px, py = owner[inside], px[inside], py[inside]
  bary = np.stack([w0, w1, w2], axis=1)[inside] / area[inside, None]
  # Perspective-correct: 1/z is affine in screen space, attributes are weighted by 1/z.
  inv_z = bary / tri[owner, :, 2]
  depth = 1.0 / inv_z.sum(axis=1)
  bary = inv_z * depth[:, None]
  # z-buffer: nearest candidate per pixel.
  pixel = py * width + px
  order = np.lexsort((depth, pixel))
  first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]]
  ys, xs = py[first], px[first]
  out.face[ys, xs] = face_ids[owner[first]]
  out.bary[ys, xs] = bary[first]
  out.depth[ys, xs] = depth[first]
  return out


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  tri = vertices[faces]
  n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def render(
  vertices: np.ndarray,
  faces: np.ndarray,
  focal: float,
  center,
  size: tuple[int, int],
  color=(0.85, 0.72, 0.6),
  background=(0.92, 0.92, 0.94),
  light=(-0.3, -0.5, -1.0),
) -> tuple[np.ndarray, np.ndarray]:
  """Flat Lambert-shaded (H, W, 3) uint8 image and (H, W) bool silhouette of a camera-frame
  mesh; `light` points from the surface towards the light, in camera coordinates."""
  height, width = size
  frags = rasterize(project(vertices, focal, center), faces, height, width)
  normals = face_normals(np.asarray(vertices, np.float64), np.asarray(faces))
  light = np.asarray(light, np.float64) / np.linalg.norm(light)
  # Faces seen from the camera (at the origin) are lit on the side facing it.
  centres = vertices[faces].mean(axis=1)
  facing = np.where(np.sum(normals * centres, axis=1, keepdims=True) > 0, -normals, normals)
  shade = 0.25 + 0.75 * np.clip(facing @ light, 0.0, 1.0)
  img = np.empty((height, width, 3))
  img[:] = background
  mask = frags.mask
  img[mask] = shade[frags.face[mask], None] * np.asarray(color)
  return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask
