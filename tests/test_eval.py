"""The evaluation CLI (SPIN's protocol) and the comparison experiment, on tiny data."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import smpl_jax
from smpl_jax import rotations
from smpl_jax.files import write_npz_atomic
from smpl_jax.joints import H36M_TO_J14, H36M_TO_J17, J24_TO_J17
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


def _ground_truth_fits(data_dir, path, noise=0.0, split="test", **keys):
  """A fits file holding each example's own pose and betas (+ noise on the pose), keys
  replaced by `keys`; returns its arrays."""
  from spin_jax.data import builders

  src = builders.open_source(data_dir, "spin_synthetic/tiny", split)
  n = len(src)
  pose, betas = np.zeros((n, 72), np.float32), np.zeros((n, 10), np.float32)
  for k in range(n):
    ex = src[k]
    pose[ex["index"]], betas[ex["index"]] = ex["pose"], ex["betas"]
  pose[:, 3:] += noise * np.random.default_rng(0).standard_normal((n, 69))
  arrays = dict(
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
  arrays.update(keys)
  write_npz_atomic(path, **arrays)
  return arrays


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
  state, _, _ = train.restore(mngr, state, it, False)
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

  # The photo demo runs the same network (its img_res, its body model) on a photo's crop.
  from PIL import Image

  from spin_jax import demo

  Image.fromarray(batch["image"][0]).resize((90, 120)).save(tmp_path / "photo.png")
  params = demo.run(
    str(tmp_path / "photo.png"), str(tmp_path / "demo"), bbox="10,20,60,80",
    workdir=str(tmp_path / "run"),
  )  # fmt: skip
  assert params["estimate"] == "network" and params["body_model"] == LOW
  assert params["crop"] == {"center": [40.0, 60.0], "scale": 0.4}
  assert np.isfinite(params["cam_t"]).all() and (tmp_path / "demo/photo_mesh.png").is_file()


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
  assert "SPIN (fits table from SMPLify's static fits)" in table and "SMPLify alone" in table
  assert "fitting the training images first took" in table
  assert rows[3]["fits_table"]["count"] > 0 and "its fits table on the" in table
  assert "static fits (where the SPIN fits tables start) on the same" in table
  cfg = json.loads((tmp_path / "cmp/spin/config.json").read_text())
  assert cfg["data"]["fits_files"] == [
    f"spin_synthetic/compare={tmp_path}/cmp/smplify_annotated/train_fits.npz"
  ]
  from PIL import Image

  with Image.open(tmp_path / "cmp/comparison.png") as im:
    assert im.size[0] > 400
  # Finished pieces are reused: a second call trains and fits nothing.
  mtimes = {p: p.stat().st_mtime for p in (tmp_path / "cmp").rglob("*timing.json")}
  assert len(mtimes) == 5  # 2 x SMPLify on test, SMPLify on train, 2 trainings
  compare.run(
    tmp_path / "cmp",
    base,
    ("hmr", "spin"),
    sizes=(16, 4, 6),
    paired=0.5,
    resolution=64,
    progress=False,
  )
  assert mtimes == {p: p.stat().st_mtime for p in (tmp_path / "cmp").rglob("*timing.json")}
  # ... and other settings are refused rather than mixed in.
  with pytest.raises(SystemExit, match="other settings"):
    compare.run(tmp_path / "cmp", base, ("hmr",), sizes=(16, 4, 6), paired=0.25, resolution=64)


def test_index_maps_pair_the_same_joints():
  # Independent of the constants' source: the H36M regressor rows and the dataset's J24 rows
  # that SPIN compares must name the same joints (SPIN pairs H36M's thorax with LSP's neck).
  from smpl_jax.joints import H36M17_NAMES, J24_TO_J17, SPIN49_NAMES

  strip = lambda n: {"Neck": "Thorax"}.get(n.split(" (")[0], n.split(" (")[0])  # noqa: E731
  pred = [H36M17_NAMES[i] for i in H36M_TO_J17]
  gt = [strip(SPIN49_NAMES[25 + j]) for j in J24_TO_J17]
  assert pred == gt


def _scaled_model_dir(tmp_path, factors):
  src = np.load(smpl_jax.open_model_path("low"))
  for gender, f in factors.items():
    arrays = {k: src[k] for k in src.files}
    arrays["v_template"] = arrays["v_template"] * f
    arrays["shapedirs"] = arrays["shapedirs"] * f
    np.savez(tmp_path / f"SMPL_{gender.upper()}.npz", **arrays)
  return tmp_path


def _batch(body, n=3, seed=0):
  rng = np.random.default_rng(seed)
  pose = 0.3 * rng.standard_normal((n, 72)).astype(np.float32)
  pose[:, 0] += np.pi
  betas = rng.standard_normal((n, 10)).astype(np.float32)
  return {"pose": pose, "betas": betas, "gender": np.array([0, 1, -1][:n], np.int32)}


def test_gendered_ground_truth_takes_each_persons_model(tmp_path):
  models = _scaled_model_dir(tmp_path, {"neutral": 1.0, "male": 1.1, "female": 0.9})
  bodies = {g: smpl_jax.load_model(models, gender=g) for g in ("neutral", "male", "female")}
  proto = eval_lib.protocol_for("spin_format/pw3d")
  batch = _batch(bodies["neutral"])
  rot = rotations.aa_to_rotmat(jnp.asarray(batch["pose"]).reshape(-1, 24, 3))
  for pred_gender in ("male", "female", "neutral"):
    # Predicting each person's ground truth with one model scores 0 exactly on that model's rows.
    errs = eval_lib.batch_errors(
      proto,
      bodies[pred_gender],
      bodies,
      eval_lib.Estimate(rot, jnp.asarray(batch["betas"]), jnp.zeros((3, 3))),
      batch,
    )
    row = {"male": 0, "female": 1, "neutral": 2}[pred_gender]
    mpjpe = np.asarray(errs["mpjpe"])
    assert mpjpe[row] < 1e-5 and np.all(np.delete(mpjpe, row) > 5e-3), (pred_gender, mpjpe)
    assert np.asarray(errs["pve"])[row] < 1e-5


def test_dataset_joints_protocol_and_pck():
  body = smpl_jax.load_model(LOW)
  proto = eval_lib.protocol_for("spin_format/mpi_inf_3dhp_test")
  batch = _batch(body, n=2)
  rot = rotations.aa_to_rotmat(jnp.asarray(batch["pose"]).reshape(-1, 24, 3))
  _, h36m = eval_lib.regressed(body, rot, jnp.asarray(batch["betas"]))
  h36m = np.asarray(h36m - h36m[:, :1])
  joints3d = np.zeros((2, 24, 4), np.float32)  # the dataset's J24 rows SPIN compares
  joints3d[:, list(J24_TO_J17), :3] = h36m[:, list(H36M_TO_J17)]
  est = eval_lib.Estimate(rot, jnp.asarray(batch["betas"]), jnp.zeros((2, 3)))
  shift = np.array([0.1025, 0.0, 0.0], np.float32)  # 10.25 cm: inside PCK's 15, off AUC's grid
  for offset, pck_abs in ((0.0, 1.0), (1.0, 1.0), (2.0, 0.0)):
    moved = joints3d.copy()
    moved[..., :3] += offset * shift
    errs = eval_lib.batch_errors(proto, body, {"neutral": body}, est, batch | {"joints3d": moved})
    np.testing.assert_allclose(errs["mpjpe"], offset * 0.1025, atol=1e-5)
    np.testing.assert_allclose(errs["pa_mpjpe"], 0.0, atol=1e-5)  # a translation only
    np.testing.assert_allclose(errs["pck_abs"], pck_abs)
    np.testing.assert_allclose(errs["pck_pa"], 1.0)
    # AUC: thresholds 0, 5, ..., 150 mm; an error of e counts below every threshold above e.
    expected = np.mean(np.linspace(0, 0.15, 31) > offset * 0.1025)
    np.testing.assert_allclose(errs["auc_abs"], expected, atol=1e-6)


def test_gendered_ground_truth_needs_one_topology(tmp_path, data_dir):
  models = _scaled_model_dir(tmp_path, {"neutral": 1.0, "male": 1.1, "female": 0.9})
  source = eval_lib.Source("open_full", 64, None)  # the full open model: another mesh
  with pytest.raises(ValueError, match="vertices"):
    eval_lib.evaluate(source, "spin_format/pw3d", data_dir=str(data_dir), models=str(models))
