"""The dataset fitter end to end on small synthetic inputs: bad examples, resume, shards, merge."""

import hashlib
import json

import numpy as np
import pytest

from fitting import cli, data_io, synthetic


@pytest.fixture(scope="module")
def spin_npz(lowres_model, tmp_path_factory):
  gt, kp = synthetic.make_dataset(lowres_model, 20, seed=7)
  kp[3] = np.nan  # NaN keypoints
  kp[4, :, 2] = 0.0  # no confident keypoint
  kp[5, :, :2] += 1000.0  # person outside the crop
  kp[6, [9, 12, 2, 5, 27, 28, 33, 34], 2] = 0.0  # no torso
  path = tmp_path_factory.mktemp("in") / "synthetic_train.npz"
  synthetic.write_spin_npz(path, kp, gt)
  return path


def _run(args):
  cli.main([str(a) for a in args] + ["--no-progress", "--num-iters", "20", "--chunk-size", "8"])


def test_crop_mapping_is_spins_affine():
  # SPIN's utils/imutils.get_transform for a 224 crop of side h = 200 * scale at `center`
  # (without its integer truncation and +-1 offsets): x' = 224/h x + 224 (0.5 - cx/h).
  rng = np.random.default_rng(0)
  center, scale = np.array([[640.0, 360.0]]), np.array([2.3])
  h = 200.0 * scale[0]
  t = np.array(
    [[224 / h, 0, 224 * (-center[0, 0] / h + 0.5)], [0, 224 / h, 224 * (-center[0, 1] / h + 0.5)]]
  )
  pts = np.concatenate([rng.uniform(300, 900, (1, 10, 2)), np.ones((1, 10, 1))], -1)
  expected = np.einsum("ij,kj->ki", t, np.concatenate([pts[0, :, :2], np.ones((10, 1))], 1))
  np.testing.assert_allclose(data_io.to_crop(pts, center, scale)[0, :, :2], expected, rtol=1e-5)


def test_reads_spin_npz_back_into_crop_pixels(lowres_model, tmp_path):
  gt, kp = synthetic.make_dataset(lowres_model, 5, seed=1)
  synthetic.write_spin_npz(tmp_path / "a.npz", kp, gt)
  ex = data_io.read_spin_npz(tmp_path / "a.npz")
  np.testing.assert_allclose(ex.keypoints, kp, atol=1e-3)
  assert list(ex.reason) == [""] * 5


def test_fits_with_failures_recorded_and_resumes(spin_npz, tmp_path):
  out = tmp_path / "fits.npz"
  _run(["--input", spin_npz, "--out", out])
  fits = data_io.read_fits(out)
  assert len(fits["loss"]) == 20 and fits["pose"].shape == (20, 72)
  reasons = fits["reason"]
  assert "NaN" in reasons[3] and "confidence" in reasons[4]
  assert "outside the crop" in reasons[5] and "torso" in reasons[6]
  assert not fits["success"][3:7].any()
  good = np.delete(np.arange(20), [3, 4, 5, 6])
  assert fits["success"][good].mean() > 0.8
  assert np.all(np.isfinite(fits["pose"])) and np.all(np.isfinite(fits["loss"]))
  # Each row names its input's content, so the fits cannot be used for other data.
  assert set(fits["source_sha256"]) == {hashlib.sha256(spin_npz.read_bytes()).hexdigest()}
  # Interrupted run: drop one chunk; the rerun refits only that one.
  parts = out.with_name(out.name + ".parts")
  stamps = {p.name: p.stat().st_mtime_ns for p in parts.glob("chunk_*.npz")}
  (parts / "chunk_000001.npz").unlink()
  _run(["--input", spin_npz, "--out", out])
  after = {p.name: p.stat().st_mtime_ns for p in parts.glob("chunk_*.npz")}
  assert after["chunk_000000.npz"] == stamps["chunk_000000.npz"]
  assert after["chunk_000002.npz"] == stamps["chunk_000002.npz"]
  assert "chunk_000001.npz" in after
  np.testing.assert_allclose(data_io.read_fits(out)["pose"], fits["pose"], atol=1e-5)


def test_resume_refuses_another_prior_and_refits_a_corrupt_chunk(spin_npz, tmp_path):
  from fitting import pose_sampler, priors

  out = tmp_path / "fits.npz"
  _run(["--input", spin_npz, "--out", out])
  parts = out.with_name(out.name + ".parts")
  (parts / "chunk_000002.npz").write_bytes(b"PK\x03\x04 truncated")  # a corrupt chunk
  _run(["--input", spin_npz, "--out", out])  # refits it instead of crashing
  assert len(data_io.read_fits(out)["loss"]) == 20
  means, covars, weights, _ = priors.fit_gmm(
    pose_sampler.sample_body_poses(2000, seed=3).astype(np.float32), 2, num_iters=5
  )
  priors.save_gmm(tmp_path / "other_prior.npz", means, covars, weights)
  with pytest.raises(SystemExit, match="different run"):
    _run(["--input", spin_npz, "--out", out, "--prior", tmp_path / "other_prior.npz"])


def test_empty_input_is_a_clear_error(tmp_path):
  np.savez(
    tmp_path / "e.npz", center=np.zeros((0, 2)), scale=np.zeros(0), part=np.zeros((0, 24, 3))
  )
  with pytest.raises(SystemExit, match="no examples"):
    _run(["--input", tmp_path / "e.npz", "--out", tmp_path / "o.npz"])


def test_shards_then_merge(spin_npz, tmp_path):
  out, work = tmp_path / "fits.npz", tmp_path / "work"
  common = ["--input", spin_npz, "--out", out, "--work-dir", work]
  _run(common + ["--shard", "0/2"])
  with pytest.raises(SystemExit, match="not finished"):
    cli.main([str(a) for a in common] + ["--merge"])
  _run(common + ["--shard", "1/2"])
  cli.main([str(a) for a in common] + ["--merge"])
  assert len(data_io.read_fits(out)["loss"]) == 20


def test_openpose_folder_with_a_malformed_file(lowres_model, tmp_path):
  gt, kp = synthetic.make_dataset(lowres_model, 3, seed=2, openpose_dropout=0.0)
  kp[1, 12] = 0.0  # left hip undetected: the camera stage must still use the other torso joints
  kp[2, 0, :2] = np.nan  # a NaN nose counts as undetected, not as a broken example
  folder = tmp_path / "openpose"
  folder.mkdir()
  for i in range(3):
    person = {"pose_keypoints_2d": (kp[i, :25] + [300.0, 200.0, 0.0]).reshape(-1).tolist()}
    (folder / f"frame_{i:03d}_keypoints.json").write_text(json.dumps({"people": [person]}))
  (folder / "frame_003_keypoints.json").write_text("{not json")
  (folder / "frame_004_keypoints.json").write_text(json.dumps({"people": []}))
  out = tmp_path / "fits.npz"
  _run(["--input", folder, "--out", out])
  fits = data_io.read_fits(out)
  assert fits["success"][:3].all(), fits["reason"]
  assert np.all(fits["loss"][:3] < 20.0)  # the camera moved to the person (not stuck at 50 m)
  assert "malformed" in fits["reason"][3] and "no person" in fits["reason"][4]


def test_bad_inputs_are_clear_errors(tmp_path):
  np.savez(tmp_path / "x.npz", part=np.zeros((3, 24, 3)))
  with pytest.raises(SystemExit, match="need 'center'"):
    cli.main(["--input", str(tmp_path / "x.npz"), "--out", str(tmp_path / "o.npz")])
  with pytest.raises(SystemExit, match="does not exist"):
    cli.main(["--input", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o.npz")])
  np.savez(
    tmp_path / "y.npz", center=np.zeros((3, 2)), scale=np.ones(3), part=np.zeros((3, 14, 3))
  )
  ex = data_io.read_spin_npz(tmp_path / "y.npz")
  assert all("part has shape (3, 14, 3), expected (3, 24, 3)" in r for r in ex.reason)
