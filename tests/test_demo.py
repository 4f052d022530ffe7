"""The photo demo: SPIN's crop rules, the overlay renderer against an independent polygon fill,
and a fit on a rendered person whose camera and pose are known."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

import smpl_jax
from smpl_jax import render
from spin_jax import demo

LOW = str(smpl_jax.open_model_path("low"))


def test_crop_rules_follow_spins_demo(tmp_path):
  kp = np.zeros((25, 3))
  kp[[0, 4, 11]] = [[100, 50, 0.9], [160, 250, 0.5], [130, 450, 0.3]]
  kp[7] = [900, 900, 0.1]  # below SPIN's 0.2: ignored
  crop = demo.crop_from_keypoints(kp)
  np.testing.assert_allclose(crop.center, [130, 250])
  assert crop.scale == pytest.approx(1.2 * 400 / 200)
  bbox = demo.crop_from_bbox([10, 20, 100, 300])
  assert bbox.center == (60, 170) and bbox.scale == 1.5
  (tmp_path / "b.json").write_text(json.dumps({"bbox": [10, 20, 100, 300]}))
  assert demo.read_bbox(str(tmp_path / "b.json")) == [10, 20, 100, 300]
  assert demo.read_bbox("10,20,100,300") == [10.0, 20.0, 100.0, 300.0]
  with pytest.raises(ValueError, match="x, y, w, h"):
    demo.read_bbox("10,20,100")
  with pytest.raises(ValueError, match="positive"):
    demo.crop_from_bbox([0, 0, -5, 10])
  with pytest.raises(ValueError, match="too few"):
    demo.crop_from_keypoints(np.zeros((25, 3)))


def _posed(model, transl):
  pose = np.zeros(72, np.float32)
  pose[0] = np.pi  # facing the camera
  pose[3 * 16 + 2], pose[3 * 17 + 2] = -0.9, 0.9  # arms down
  pose[3 * 18 + 1] = -0.8
  out = jax.jit(smpl_jax.forward)(model, np.zeros(10, np.float32), pose[:3], pose[3:])
  return out, np.asarray(out.vertices, np.float64) + transl


def test_overlay_silhouette_matches_an_independent_polygon_fill():
  model = smpl_jax.load_model(None)  # the full model, as the demo draws it
  _, verts = _posed(model, [0.1, 0.05, 5.0])
  faces = np.asarray(model.faces)
  focal, center, (h, w) = 700.0, (140.0, 190.0), (360, 300)  # off-centre, not square
  _, mask = render.render(verts, faces, focal, center, (h, w))
  uv = render.project(verts, focal, center)[:, :2] - 0.5  # PIL: pixel centres at integers
  ref = Image.new("1", (w, h))
  draw = ImageDraw.Draw(ref)
  for tri in uv[faces]:
    draw.polygon([tuple(p) for p in tri], fill=1)
  ref = np.asarray(ref, bool)
  iou = (mask & ref).sum() / (mask | ref).sum()
  assert iou > 0.92, iou  # PIL also fills pixels the outline only grazes
  # Every disagreement lies along the outline: PIL also fills pixels that an edge of a
  # sliver triangle grazes (up to 2 px out), and never misses one of ours by more than 1 px.
  assert (ref & ~_dilate(mask, 2)).sum() == 0
  assert (mask & ~_dilate(ref, 1)).sum() == 0


def _dilate(m, r):
  for _ in range(r):
    m = m | np.roll(m, 1, 0) | np.roll(m, -1, 0)
    m = m | np.roll(m, 1, 1) | np.roll(m, -1, 1)
  return m


def test_demo_recovers_a_rendered_person(tmp_path):
  model = smpl_jax.load_model(LOW)
  transl = np.array([0.05, 0.2, 12.0])
  out, verts = _posed(model, transl)
  focal, center, (h, w) = 1000.0, (160.0, 200.0), (400, 320)
  rgb, _ = render.render(verts, np.asarray(model.faces), focal, center, (h, w))
  Image.fromarray(rgb).save(tmp_path / "person.png")
  op = np.asarray(out.joint_sets["spin49"])[:25] + transl
  uv = focal * op[:, :2] / op[:, 2:] + center - 0.5  # OpenPose writes pixel indices
  kp = np.concatenate([uv, np.ones((25, 1))], 1)
  kp[[19, 20, 21, 22, 23, 24]] = 0  # no feet
  doc = {"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}
  (tmp_path / "person.json").write_text(json.dumps(doc))

  args = ["--img", str(tmp_path / "person.png"), "--openpose", str(tmp_path / "person.json")]
  args += ["--no_network", "--body_model", LOW, "--out", str(tmp_path / "out")]
  params = demo.main(args)
  assert params["smplify"]["success"]
  assert params["smplify"]["mean_keypoint_error_px"] < 4.0  # on a 400 px image
  # The photo camera puts the fitted mesh where the person is.
  pic = np.asarray(Image.open(tmp_path / "out/person_mesh.png"))
  assert pic.shape == (h, 2 * w, 3)
  # Outputs get the permissions open() would give them (atomic writes go through mkstemp).
  umask = os.umask(0)
  os.umask(umask)
  assert (tmp_path / "out/person.obj").stat().st_mode & 0o777 == 0o666 & ~umask
  lines = (tmp_path / "out/person.obj").read_text().splitlines()
  assert sum(ln.startswith("v ") for ln in lines) == model.num_vertices
  assert sum(ln.startswith("f ") for ln in lines) == len(model.faces)
  fitted = np.array([ln.split()[1:] for ln in lines if ln.startswith("v ")], float)
  f_img, c_img = params["focal_px"], params["principal_point_px"]
  _, fit_mask = render.render(fitted, np.asarray(model.faces), f_img, c_img, (h, w))
  _, true_mask = render.render(verts, np.asarray(model.faces), focal, center, (h, w))
  iou = (fit_mask & true_mask).sum() / (fit_mask | true_mask).sum()
  assert iou > 0.6, iou

  with pytest.raises(SystemExit, match="needs 2D keypoints"):
    demo.main(["--img", str(tmp_path / "person.png"), "--no_network", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="no trained network"):
    demo.main(["--img", str(tmp_path / "person.png"), "--workdir", str(tmp_path / "none")])
  (tmp_path / "bad.png").write_text("not an image")
  with pytest.raises(SystemExit, match="cannot read the photo"):
    demo.main(["--img", str(tmp_path / "bad.png"), "--no_network", "--out", str(tmp_path)])
