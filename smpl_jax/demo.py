"""Demo: pose a batch of bodies, time the forward pass, render them with their SPIN keypoints.

    python -m smpl_jax.demo --out outputs/demo            # the embedded open body model
    python -m smpl_jax.demo --model data/smpl/SMPL_NEUTRAL.pkl --out outputs/demo_smpl

Writes `bodies.png` (flat-shaded meshes seen through SPIN's camera, focal 5000 px, with the
49 SPIN joints drawn) and `body0.obj`, and prints bodies/s for the full and joints-only passes.
"""

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

import smpl_jax
from smpl_jax import camera
from smpl_jax import render as render_lib
from smpl_jax.io import write_obj

_DEMO_POSES = {  # joint name -> axis-angle (radians), on top of small random poses
    "left_shoulder": (0.0, 0.0, 1.0), "right_shoulder": (0.0, 0.0, 0.3),
    "left_elbow": (0.0, -1.2, 0.0), "right_knee": (1.2, 0.0, 0.0), "right_hip": (-0.9, 0.0, 0.0),
    "neck": (0.0, 0.4, 0.0),
}  # fmt: skip


def demo_params(model, n: int, seed: int):
  """n bodies for the demo: small random poses (every other one with `_DEMO_POSES` on top), random
  betas, turned to face SPIN's camera; a dict of forward's arguments."""
  rng = np.random.default_rng(seed)
  body = rng.normal(scale=0.15, size=(n, model.num_joints - 1, 3))
  if n > 1:
    for name, aa in _DEMO_POSES.items():
      body[1::2, model.joint_names.index(name) - 1] += aa
  global_orient = np.zeros((n, 3))
  global_orient[:, 0] = np.pi  # SPIN's camera looks down +z with y down: turn the body to face it
  global_orient[:, 1] = rng.uniform(-0.6, 0.6, n)
  return dict(
    betas=rng.normal(size=(n, min(10, model.num_betas))).astype(np.float32),
    global_orient=global_orient.astype(np.float32),
    body_pose=body.reshape(n, -1).astype(np.float32),
    transl=np.zeros((n, 3), np.float32),
  )


def bodies_per_second(fn, model, params, repeats: int = 10) -> float:
  jax.block_until_ready(fn(model, **params))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(model, **params))
    times.append(time.perf_counter() - t)
  return len(params["betas"]) / float(np.median(times))


def render(vertices, faces, keypoints, size: int = 448) -> Image.Image:
  """One mesh in SPIN's camera (body centred, 224-crop intrinsics scaled to `size`), z-buffered
  and flat-shaded by smpl_jax.render, with keypoints drawn as dots."""
  focal = camera.FOCAL_LENGTH * size / camera.IMG_RES
  centre = np.array([size / 2, size / 2])
  # Depth that fits a 2 m tall body into 90 % of the image, centred on the mesh.
  mid = 0.5 * (vertices.min(0) + vertices.max(0))
  depth = focal * 2.0 / (0.9 * size)
  t = np.array([-mid[0], -mid[1], depth - mid[2]])
  rgb, _ = render_lib.render(vertices + t, faces, focal, centre, (size, size))
  img = Image.fromarray(rgb)
  draw = ImageDraw.Draw(img)
  for x, y in np.asarray(camera.perspective_projection(keypoints, t, focal, centre)):
    draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(220, 30, 30))
  return img


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default=None, help="SMPL .pkl/.npz (default: the open model)")
  ap.add_argument("--out", default="outputs/demo")
  ap.add_argument("--batch", type=int, default=64, help="batch size for the timing")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)

  model = smpl_jax.load_model(args.model)
  print(
    f"model: {model.name} ({model.num_vertices} vertices, {model.num_betas} betas, "
    f"joint sets {[js.name for js in model.joint_sets]})"
  )
  params = demo_params(model, args.batch, args.seed)
  full = jax.jit(smpl_jax.forward_batch)
  joints_only = jax.jit(smpl_jax.forward_joints_batch)
  print(
    f"batch {args.batch}: forward {bodies_per_second(full, model, params):,.0f} bodies/s, "
    f"joints-only {bodies_per_second(joints_only, model, params):,.0f} bodies/s "
    f"on {jax.devices()[0].platform}"
  )

  shown = {k: v[:4] for k, v in params.items()}
  result = full(model, **shown)
  faces = np.asarray(model.faces)
  tiles = [
    render(np.asarray(result.vertices[i]), faces, np.asarray(result.joint_sets["spin49"][i]))
    for i in range(4)
  ]
  montage = Image.new("RGB", (4 * tiles[0].width, tiles[0].height))
  for i, tile in enumerate(tiles):
    montage.paste(tile, (i * tile.width, 0))
  montage.save(out / "bodies.png")
  rest = smpl_jax.forward(model, betas=jnp.asarray(shown["betas"][0]))
  write_obj(out / "body0.obj", np.asarray(rest.vertices), faces)
  print(f"wrote {out / 'bodies.png'} and {out / 'body0.obj'}")


if __name__ == "__main__":
  main()
