"""Faults in the dataset fitter (issue 13): merges that duplicate rows, arguments that poison a
work folder, crop boxes that turn a person upside down, and one-line errors."""

import hashlib
import json

import numpy as np
import pytest

from fitting import cli, data_io, priors
from smpl_jax import files


def _chunk(path, run_id, start, n):
  files.write_npz_atomic(
    path,
    run_id=np.asarray(run_id),
    start=np.asarray(start),
    pose=np.zeros((n, 72), np.float32),
    betas=np.zeros((n, 10), np.float32),
    cam_t=np.zeros((n, 3), np.float32),
    loss=np.zeros(n, np.float32),
    joint_error_px=np.zeros((n, 49), np.float32),
    success=np.ones(n, bool),
    reason=np.full(n, ""),
    source=np.full(n, "a.npz"),
    source_sha256=np.full(n, "0" * 64),
    index=np.arange(start, start + n),
  )


def test_merge_refuses_chunks_of_another_chunk_size(tmp_path):
  """The issue's case: a lost manifest, a rerun with another --chunk-size, and chunks of both
  sizes in one folder; the merge used to take them all (duplicated rows, "all fitted")."""
  work = tmp_path / "parts"
  work.mkdir()
  (work / "manifest.json").write_text(json.dumps(dict(run_id="r", num_examples=12, chunk=4)))
  _chunk(work / "chunk_000000.npz", "r", 0, 4)
  _chunk(work / "chunk_000001.npz", "r", 8, 8)  # chunk 1 of the earlier chunk size 8
  _chunk(work / "chunk_000002.npz", "r", 8, 4)
  with pytest.raises(SystemExit, match=r"1 of 3 chunks are not finished"):
    cli.merge(work, tmp_path / "out.npz")
  _chunk(work / "chunk_000001.npz", "r", 4, 4)
  merged = cli.merge(work, tmp_path / "out.npz")
  assert merged["index"].tolist() == list(range(12))
  assert data_io.read_fits(tmp_path / "out.npz")["source_sha256"].shape == (12,)
  # A chunk from before chunks recorded their start is refitted, not trusted.
  files.write_npz_atomic(work / "chunk_000002.npz", run_id=np.asarray("r"), loss=np.zeros(4))
  with pytest.raises(SystemExit, match="not finished"):
    cli.merge(work, tmp_path / "out.npz")


@pytest.mark.parametrize(
  "args, message",
  [
    (["--chunk-size", "0"], "--chunk-size 0: must be a positive"),
    (["--chunk-size", "-3"], "--chunk-size -3: must be a positive"),
    (["--num-iters", "0"], "--num-iters 0: must be positive"),
    (["--step-size", "nan"], "--step-size nan: must be a positive"),
    (["--interpenetration-weight", "-1"], "--interpenetration-weight -1.0: must be 0"),
    (["--shard", "abc"], "--shard abc: expected i/n"),
    (["--shard", "1"], "--shard 1: expected i/n"),
    (["--shard", "0/2/3"], "--shard 0/2/3: expected i/n"),
    (["--shard", "2/2"], "--shard 2/2: expected i/n with 0 <= i < n"),
  ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys, args, message):
  out = tmp_path / "fits.npz"
  with pytest.raises(SystemExit) as exc:
    cli.main(["--input", str(tmp_path / "missing.npz"), "--out", str(out), *args])
  assert exc.value.code == 2
  assert message in capsys.readouterr().err
  assert list(tmp_path.iterdir()) == []  # no manifest, no work folder to poison later runs


def _spin_npz(path, center, scale):
  n = len(scale)
  part = np.zeros((n, 24, 3), np.float32)
  part[:, :, :2] = np.asarray([100.0, 100.0]) + np.random.default_rng(0).uniform(-40, 40, (24, 2))
  part[:, :, 2] = 1
  np.savez(path, center=center, scale=scale, part=part)


def test_bad_crop_boxes_are_named_failures_not_rotated_people(tmp_path):
  center = np.full((4, 2), 100.0)
  center[3] = np.nan
  _spin_npz(tmp_path / "a.npz", center, np.array([0.8, -1.2, 0.0, 0.8]))
  ex = data_io.read_spin_npz(tmp_path / "a.npz")
  assert ex.reason[0] == ""
  assert "scale is -1.2" in ex.reason[1] and "positive" in ex.reason[1]
  assert "scale is 0.0" in ex.reason[2]
  assert "center is [nan, nan]" in ex.reason[3]
  assert not np.any(ex.keypoints[1:, :, 2])  # nothing of the bad rows reaches the fitter
  assert set(ex.source_sha256) == {hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()}


@pytest.mark.parametrize(
  "center, message",
  [(np.asarray(5.0), "'center' is a 0-d array"), (np.asarray(["a", "b"]), "'center' is a 1-d")],
)
def test_center_of_the_wrong_kind_is_one_error(tmp_path, center, message):
  _spin_npz(tmp_path / "a.npz", center, np.array([0.8, 0.8]))
  with pytest.raises(ValueError, match=message):
    data_io.read_spin_npz(tmp_path / "a.npz")


def test_prior_npz_without_covars_is_named(tmp_path):
  np.savez(tmp_path / "gmm.npz", means=np.zeros((2, 69)), weights=np.ones(2) / 2)
  with pytest.raises(ValueError, match=r"lacks \['covars'\]; a GMM needs means"):
    priors.load_gmm(tmp_path / "gmm.npz")


def test_fits_record_the_sha256_of_each_input_file(tmp_path):
  """Writer side of item 3: every row names its input's bytes (npz: the file; OpenPose: each
  JSON file), through read_inputs; fits files from before the key still load."""
  data = tmp_path / "big.bin"
  data.write_bytes(np.random.default_rng(0).bytes((1 << 20) + 7))  # more than one read block
  assert files.file_sha256(data) == hashlib.sha256(data.read_bytes()).hexdigest()
  _spin_npz(tmp_path / "a.npz", np.full((2, 2), 100.0), np.array([0.8, 0.8]))
  people = tmp_path / "clip"
  people.mkdir()
  for i in range(2):
    pose = np.zeros((25, 3))
    pose[:, :2] = np.random.default_rng(i).uniform(50, 150, (25, 2))
    pose[:, 2] = 1
    (people / f"f{i}.json").write_text(
      json.dumps(dict(people=[dict(pose_keypoints_2d=pose.ravel().tolist())]))
    )
  ex = data_io.read_inputs([tmp_path / "a.npz", people])
  sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
  assert ex.source_sha256.tolist() == [sha(tmp_path / "a.npz")] * 2 + [
    sha(people / "f0.json"),
    sha(people / "f1.json"),
  ]
  assert "source_sha256" in data_io.OPTIONAL_FIT_KEYS
  assert "source_sha256" not in data_io.FIT_KEYS
  old = {k: np.zeros(2) for k in data_io.FIT_KEYS}
  files.write_npz_atomic(tmp_path / "old_fits.npz", **old)
  assert "source_sha256" not in data_io.read_fits(tmp_path / "old_fits.npz")
