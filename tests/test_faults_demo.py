"""Faults in the rasterizer, the photo demo and image reading (issue 13): empty coverage,
decompression bombs, huge photos, and boxes that are not in the photo."""

import json
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from test_data import _write_spin_dataset
from test_demo import LOW, _posed

import smpl_jax
from smpl_jax import render
from spin_jax import demo
from spin_jax.data import build, spin_format


def test_mesh_covering_no_pixel_centre_renders_background():
  model = smpl_jax.load_model(LOW)
  verts = np.asarray(smpl_jax.forward(model).vertices, np.float64)
  faces = np.asarray(model.faces)
  for name, v, size in [
    ("far away", verts + [0.0, 0.0, 5000.0], (64, 64)),  # sub-pixel: no pixel centre inside
    ("behind the camera", verts + [0.0, 0.0, -5.0], (64, 64)),
    ("off screen", verts + [100.0, 0.0, 5.0], (64, 64)),
    ("a 1x1 image", verts + [0.3, 0.3, 60.0], (1, 1)),
  ]:
    rgb, mask = render.render(v, faces, 500.0, (32.0, 32.0), size)
    assert not mask.any(), name
    assert rgb.shape == (*size, 3) and np.all(rgb == rgb[0, 0]), name
  # Through the camera plane, a vertex exactly at z = 0: its faces are dropped, no warning
  # (the test suite turns numpy's divide / invalid warnings into errors).
  v = verts + [0.0, 0.0, 1.0]
  v[:, 2] -= v[0, 2]
  _, mask = render.render(v, faces, 500.0, (32.0, 32.0), (64, 64))
  assert mask.any()
  # The demo's picture of a 1x1 photo (SPIN's camera on a 1 px box) draws instead of crashing.
  focal, center = demo.photo_camera(demo.Crop((0.5, 0.5), 1 / 200))
  pic = demo.draw(Image.new("RGB", (1, 1)), verts + [0.0, 0.0, 60.0], faces, focal, center)
  assert pic.size == (2, 1)


def _person(tmp_path, upscale=1):
  """A rendered person (400 x 320 photo) with its OpenPose JSON, optionally enlarged."""
  model = smpl_jax.load_model(LOW)
  transl = np.array([0.05, 0.2, 12.0])
  out, verts = _posed(model, transl)
  focal, center = 1000.0, (160.0, 200.0)
  rgb, _ = render.render(verts, np.asarray(model.faces), focal, center, (400, 320))
  img = Image.fromarray(rgb)
  if upscale > 1:
    img = img.resize((320 * upscale, 400 * upscale), Image.Resampling.NEAREST)
  name = f"person{upscale}"
  img.save(tmp_path / f"{name}.png")
  op = np.asarray(out.joint_sets["spin49"])[:25] + transl
  uv = upscale * (focal * op[:, :2] / op[:, 2:] + center) - 0.5  # OpenPose: pixel indices
  kp = np.concatenate([uv, np.ones((25, 1))], 1)
  doc = {"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}
  (tmp_path / f"{name}.json").write_text(json.dumps(doc))
  return ["--img", str(tmp_path / f"{name}.png"), "--openpose", str(tmp_path / f"{name}.json")]


def test_large_photo_is_drawn_at_a_bounded_size_with_photo_pixel_outputs(tmp_path):
  common = ["--no_network", "--body_model", LOW, "--out", str(tmp_path / "out")]
  small = demo.main(_person(tmp_path) + common)
  args = _person(tmp_path, upscale=12) + common  # 3840 x 4800 px, 18.4 MP
  tracemalloc.start()
  try:
    large = demo.main(args)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  # Drawing at full size held float64 copies of the photo and its renders (18.4 MP x 3 x 8
  # bytes = 442 MB each): 3.0 GB of numpy memory at peak for this photo (measured with
  # tracemalloc). Drawn at 1920 px with float64 copies it peaked at 0.59 GB; blended in uint8
  # and rasterized in bounded chunks, at 0.22 GB.
  assert peak < 0.4e9, peak / 1e6
  with Image.open(tmp_path / "out" / "person12_mesh.png") as pic:
    assert pic.size == (2 * 1536, demo.MAX_SIDE)  # two panels of 1536 x 1920
  # The parameters are in the large photo's own pixels: 12x the small photo's camera.
  assert large["focal_px"] == pytest.approx(12 * small["focal_px"], rel=1e-6)
  pp_small = np.asarray(small["principal_point_px"])
  np.testing.assert_allclose(large["principal_point_px"], 12 * pp_small, rtol=1e-5)
  np.testing.assert_allclose(large["cam_t"], small["cam_t"], atol=1e-3)
  np.testing.assert_allclose(large["pose_axis_angle"], small["pose_axis_angle"], atol=1e-3)


def test_demo_refuses_bad_boxes_and_bombs(tmp_path, monkeypatch, capsys):
  base = _person(tmp_path)[:2] + ["--no_network", "--out", str(tmp_path / "out")]
  for box in ("nan,10,50,50", "10,10,inf,50"):
    with pytest.raises(SystemExit, match="must be finite"):
      demo.main(base + ["--bbox", box])
  with pytest.raises(SystemExit, match="--max_side 0"):
    demo.main(base + ["--max_side", "0"])
  with pytest.raises(SystemExit, match=r"lies outside the 320 x 400 photo"):
    demo.main(base + ["--bbox", "1000,1000,50,50"])
  crop = demo.crop_from_bbox([300, 380, 100, 100])  # 4 % of it inside
  demo.check_crop_in_image(crop, (320, 400))
  assert "only 4 % of the person box" in capsys.readouterr().out
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 128,000 px photo: a "bomb"
  with pytest.raises(SystemExit, match=r"cannot read the photo .*decompression bomb"):
    demo.main(base)


def test_decompression_bomb_is_a_skippable_row(tmp_path, monkeypatch):
  root = tmp_path / "manual"
  _write_spin_dataset(root, n=3)
  Image.new("RGB", (900, 900)).save(root / "h36m" / "images" / "S1_walk.1_000001.jpg")
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # 810,000 px > 2x: an error in PIL
  argv = ["spin", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(root)]
  argv += ["--datasets", "h36m"]
  with pytest.raises(spin_format.DataError, match=r"h36m row 1 .*decompression-bomb limit"):
    build.main(argv)
  (out,) = build.main(argv + ["--skip_bad"])
  report = json.loads((out / "build_report.json").read_text())
  assert [r["index"] for r in report["skipped"]] == [1] and report["num_rows"] == 3


def test_demo_on_a_1x1_photo_draws_an_empty_overlay(tmp_path):
  # The box is the whole 1 px photo; the person's keypoints sit in its upper left, so the
  # fitted mesh covers no pixel centre of the photo (the rasterizer raised IndexError here).
  model = smpl_jax.load_model(LOW)
  out, _ = _posed(model, [0.05, 0.2, 12.0])
  op = np.asarray(out.joint_sets["spin49"])[:25] + [0.05, 0.2, 12.0]
  uv = op[:, :2] / op[:, 2:]
  uv = (uv - uv.min(0)) * (0.35 / np.ptp(uv[:, 1])) + [0.05, 0.1]  # continuous px, in [0, 0.5)
  kp = np.concatenate([uv - 0.5, np.ones((25, 1))], 1)  # OpenPose: pixel indices
  (tmp_path / "dot.json").write_text(
    json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]})
  )
  Image.new("RGB", (1, 1), (90, 100, 110)).save(tmp_path / "dot.png")
  args = ["--img", str(tmp_path / "dot.png"), "--openpose", str(tmp_path / "dot.json")]
  args += ["--bbox", "0,0,1,1", "--no_network", "--body_model", LOW, "--out", str(tmp_path)]
  params = demo.main(args)
  assert np.all(np.isfinite(params["cam_t"])) and params["focal_px"] > 0
  with Image.open(tmp_path / "dot_mesh.png") as pic:
    assert pic.size == (2, 1)
  lines = (tmp_path / "dot.obj").read_text().splitlines()
  verts = np.array([ln.split()[1:] for ln in lines if ln.startswith("v ")], float)
  f, c = params["focal_px"], params["principal_point_px"]
  _, mask = render.render(verts, np.asarray(model.faces), f, c, (1, 1))
  assert not mask.any()  # the case meant: the mesh covers no pixel centre of the photo
