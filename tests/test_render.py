"""The numpy rasterizer against brute-force pixel tests and simple scenes."""

import jax
import numpy as np

import smpl_jax
from smpl_jax import camera, render


def _brute_force_coverage(tri_uv, height, width):
  ys, xs = np.mgrid[0:height, 0:width]
  p = np.stack([xs + 0.5, ys + 0.5], -1)
  a, b, c = tri_uv

  def edge(p0, p1, q):
    return (p1[0] - p0[0]) * (q[..., 1] - p0[1]) - (p1[1] - p0[1]) * (q[..., 0] - p0[0])

  w = np.stack([edge(b, c, p), edge(c, a, p), edge(a, b, p)])
  return np.all(w >= 0, axis=0) | np.all(w <= 0, axis=0)


def test_single_triangle_covers_exactly_the_pixel_centres_inside():
  rng = np.random.default_rng(0)
  for _ in range(20):
    uv = rng.uniform(-5, 45, (3, 2))
    screen = np.concatenate([uv, np.full((3, 1), 2.0)], 1)
    frags = render.rasterize(screen, np.array([[0, 1, 2]]), 40, 40)
    np.testing.assert_array_equal(frags.mask, _brute_force_coverage(uv, 40, 40))
    assert np.allclose(frags.bary[frags.mask].sum(-1), 1.0)


def test_nearer_face_wins_and_depth_is_perspective_correct():
  # Two overlapping squares (two triangles each) at depths 2 and 3, the far one drawn first.
  quad = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
  verts = np.concatenate([np.c_[quad * 1.5, np.full(4, 3.0)], np.c_[quad * 0.5, np.full(4, 2.0)]])
  faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
  frags = render.rasterize(render.project(verts, 20.0, (32, 32)), faces, 64, 64)
  assert np.all(frags.face[32, 32] >= 2) and np.isclose(frags.depth[32, 32], 2.0)
  far_only = frags.mask & (frags.face < 2)
  assert far_only.any() and np.allclose(frags.depth[far_only], 3.0)
  # A tilted plane: interpolated depth equals the ray-plane intersection.
  tilted = np.array([[-1, -1, 2.0], [1, -1, 4.0], [1, 1, 4.0], [-1, 1, 2.0]])
  f = render.rasterize(render.project(tilted, 20.0, (32, 32)), faces[:2], 64, 64)
  v, u = np.nonzero(f.mask)
  x = (u + 0.5 - 32) / 20.0  # ray direction (x, y, 1) through the pixel centre
  z_plane = 3.0 / (1.0 - x)  # plane z = 3 + x_world, with x_world = x z
  np.testing.assert_allclose(f.depth[v, u], z_plane, rtol=1e-9)


def test_body_silhouette_matches_its_projected_vertices(lowres_model):
  out = jax.jit(smpl_jax.forward)(lowres_model, global_orient=np.array([np.pi, 0, 0], np.float32))
  verts = np.asarray(out.vertices) + [0.0, 0.0, 45.0]
  img, mask = render.render(
    verts, np.asarray(lowres_model.faces), camera.FOCAL_LENGTH, (112, 112), (224, 224)
  )
  assert img.shape == (224, 224, 3) and img.dtype == np.uint8
  uv = render.project(verts, camera.FOCAL_LENGTH, (112, 112))[:, :2].astype(int)
  inside = (uv >= 0).all(1) & (uv < 224).all(1)
  grown = mask.copy()  # the silhouette grown by one pixel: rim vertices sit on its edge
  for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
    grown |= np.roll(mask, (dy, dx), axis=(0, 1))
  assert grown[uv[inside, 1], uv[inside, 0]].mean() > 0.99
  assert 0.05 < mask.mean() < 0.6
