"""The evaluation CLI (SPIN's protocol) and the comparison experiment, on tiny data."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import smpl_jax
from fitting.data_io import write_npz_atomic
from smpl_jax.joints import H36M_TO_J14, H36M_TO_J17
from spin_jax import eval as eval_lib
from spin_jax import train
from spin_jax.data import build
from tests.test_train import tiny_config

ROOT = Path(__file__).resolve().parents[1]
LOW = str(smpl_jax.open_model_path("low"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("eval_tfds")
  build.main(
    ["synthetic", "--data_dir", str(d), "--name", "tiny", "--num_train", "16"]
    + ["--num_validation", "4", "--num_test", "10", "--resolution", "64", "--workers", "1"]
    + ["--model", LOW]
  )
  return d


def test_protocols_follow_spin():
  p2 = eval_lib.protocol_for("spin_format/h36m_p2")
  assert p2.pred_joints == H36M_TO_J14 and not p2.gt_from_smpl and not p2.pck
  pw3d = eval_lib.protocol_for("spin_format/pw3d")
  assert pw3d.gt_from_smpl and pw3d.gendered
  hp = eval_lib.protocol_for("spin_format/mpi_inf_3dhp_test")
  assert hp.pred_joints == H36M_TO_J17 and hp.pck
  with pytest.raises(ValueError, match="no 3D evaluation"):
    eval_lib.protocol_for("spin_format/coco")
  with pytest.raises(ValueError, match="3DPW|gendered"):
    eval_lib.evaluate(eval_lib.Source("x", 64, None), "spin_format/pw3d", data_dir="/nonexistent")


def _ground_truth_fits(data_dir, path, noise=0.0):
  """A fits file holding each test example's own pose and betas (+ noise on the pose)."""
  from spin_jax.data import builders

  src = builders.open_source(data_dir, "spin_synthetic/tiny", "test")
  n = len(src)
  pose, betas = np.zeros((n, 72), np.float32), np.zeros((n, 10), np.float32)
  for k in range(n):
    ex = src[k]
    pose[ex["index"]], betas[ex["index"]] = ex["pose"], ex["betas"]
  pose[:, 3:] += noise * np.random.default_rng(0).standard_normal((n, 69))
  write_npz_atomic(
    path,
    pose=pose,
    betas=betas,
    cam_t=np.zeros((n, 3), np.float32),
    loss=np.zeros(n, np.float32),
    joint_error_px=np.zeros((n, 49), np.float32),
    success=np.ones(n, bool),
    reason=np.full(n, ""),
    source=np.full(n, "tiny"),
    index=np.arange(n),
  )


def test_ground_truth_scores_zero_and_noise_does_not(data_dir, tmp_path):
  _ground_truth_fits(data_dir, tmp_path / "exact.npz")
  summary = eval_lib.main(
    ["--fits", str(tmp_path / "exact.npz"), "--dataset", "spin_synthetic/tiny"]
    + ["--data_dir", str(data_dir), "--body_model", LOW, "--batch_size", "4"]
  )
  assert summary["count"] == 10
  for k in ("mpjpe", "pa_mpjpe", "pve"):
    assert summary[k] < 1e-3, (k, summary[k])  # mm
  out = json.loads((tmp_path / "spin_synthetic_tiny_test.json").read_text())
  assert out == summary
  assert (
    "| exact | spin_synthetic/tiny/test | 10 |"
    in (tmp_path / "spin_synthetic_tiny_test.md").read_text()
  )
  with np.load(tmp_path / "spin_synthetic_tiny_test_predictions.npz") as d:
    assert d["joints"].shape == (10, 14, 3) and sorted(d["index"]) == list(range(10))

  _ground_truth_fits(data_dir, tmp_path / "noisy.npz", noise=0.2)
  source = eval_lib.fits_source(tmp_path / "noisy.npz", LOW)
  noisy, per = eval_lib.evaluate(
    source, "spin_synthetic/tiny", "test", str(data_dir), batch_size=4, progress=False
  )
  assert 5 < noisy["pa_mpjpe"] < noisy["mpjpe"]  # Procrustes only removes error
  assert noisy["pve"] > 5
  # An independent check of one person: numpy Procrustes on the saved joints.
  body = smpl_jax.load_model(LOW)
  with np.load(tmp_path / "noisy.npz") as f:
    k = int(per["index"][0])
    pose, betas = f["pose"][k], f["betas"][k]
  out = smpl_jax.forward(body, jnp.asarray(betas), jnp.asarray(pose[:3]), jnp.asarray(pose[3:]))
  h = np.asarray(out.joint_sets["h36m17"])
  np.testing.assert_allclose(per["joints"][0], (h - h[:1])[list(H36M_TO_J14)], atol=1e-4)


def test_fits_for_another_dataset_are_refused(data_dir, tmp_path):
  _ground_truth_fits(data_dir, tmp_path / "f.npz")
  with np.load(tmp_path / "f.npz") as d:
    short = {k: d[k][:3] for k in d.files}
  write_npz_atomic(tmp_path / "short.npz", **short)
  source = eval_lib.fits_source(tmp_path / "short.npz", LOW)
  with pytest.raises(ValueError, match="no fit for dataset row"):
    eval_lib.evaluate(
      source, "spin_synthetic/tiny", "test", str(data_dir), batch_size=4, progress=False
    )


def test_checkpoint_eval_matches_the_trainer(data_dir, tmp_path):
  cfg = tiny_config(data_dir, tmp_path / "run")
  train.run(cfg, tmp_path / "run")
  source = eval_lib.checkpoint_source(tmp_path / "run")
  assert source.name == "run@4" and source.img_res == 64
  # The restored network gives the trainer's own predictions.
  graphdef, eval_graphdef, state, _ = train.create_state(
    cfg, train.layout_of(cfg), train.make_optimizer(cfg)
  )
  mngr = train.checkpoint_manager(tmp_path / "run", cfg)
  it = train.pipeline.make_iterator(train.data_options(cfg), process_index=0, process_count=1)
  state, _ = train.restore(mngr, state, it, False)
  batch = next(
    iter(eval_lib.eval_batches(str(data_dir), "spin_synthetic/tiny", "test", 4, 64, None))
  )[0]
  _, pred = train.ts.predict_joints(
    eval_graphdef, state.params, state.rest, smpl_jax.load_model(LOW), batch["image"]
  )
  est = source.estimate(batch)
  np.testing.assert_allclose(est.rotmat, pred.rotmat, atol=1e-5)
  summary, _ = eval_lib.evaluate(
    source, "spin_synthetic/tiny", "test", str(data_dir), batch_size=4, progress=False
  )
  assert summary["count"] == 10 and np.isfinite(summary["pa_mpjpe"])


def test_comparison_experiment_runs_end_to_end(data_dir, tmp_path):
  spec = importlib.util.spec_from_file_location("compare", ROOT / "experiments/compare.py")
  compare = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(compare)
  base = tiny_config(data_dir, tmp_path)
  base = dataclasses.replace(base, steps=2, batch_size=4)
  rows = compare.run(
    tmp_path / "cmp",
    base,
    ("hmr", "spin"),
    sizes=(16, 4, 6),
    paired=0.5,
    resolution=64,
    progress=False,
  )
  names = ["smplify_detected", "smplify_annotated", "hmr", "spin", "mean_pose"]
  assert [r["name"] for r in rows] == names
  assert all(r["count"] == 6 and np.isfinite(r["pa_mpjpe"]) for r in rows)
  # SMPLify on exact 2D keypoints beats guessing the mean pose.
  assert rows[1]["pa_mpjpe"] < rows[-1]["pa_mpjpe"]
  table = (tmp_path / "cmp/results.md").read_text()
  assert "SPIN (fitting in the loop)" in table and "SMPLify alone" in table
  from PIL import Image

  with Image.open(tmp_path / "cmp/comparison.png") as im:
    assert im.size[0] > 400
  # Finished pieces are reused: a second call trains and fits nothing.
  mtimes = {p: p.stat().st_mtime for p in (tmp_path / "cmp").rglob("timing.json")}
  compare.run(
    tmp_path / "cmp",
    base,
    ("hmr", "spin"),
    sizes=(16, 4, 6),
    paired=0.5,
    resolution=64,
    progress=False,
  )
  assert mtimes == {p: p.stat().st_mtime for p in (tmp_path / "cmp").rglob("timing.json")}
