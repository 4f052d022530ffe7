"""Faults in the trainer, the data builder and evaluation (issue 13): nothing lost, nothing mixed.

Each test pins one case that lost work or gave a wrong answer before: the trainer's fits table
spanning a skip_bad dataset's annotation rows, fits refused for data they were not made from,
runs that cannot go backwards, SIGTERM, failed checkpoint saves, and one-line errors.
"""

import json
import os
import resource
import signal

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_data import _write_spin_dataset
from test_eval import _ground_truth_fits
from test_train import tiny_config

import smpl_jax
from smpl_jax.files import write_npz_atomic
from spin_jax import config as spin_config
from spin_jax import eval as eval_lib
from spin_jax import fits as fits_lib
from spin_jax import train
from spin_jax.data import build, builders


@pytest.fixture(scope="module")
def data_dir(tiny_train_data):
  return tiny_train_data


# -- 1, 5: a skip_bad dataset's rows, and rebuilding it ----------------------------------------


def _break_rows(root, rows):
  for i in rows:
    (root / "h36m" / "images" / f"S1_walk.{i}_{i:06d}.jpg").write_bytes(b"not a jpeg")


def test_skip_bad_table_spans_annotation_rows_and_rebuild_keeps_report(tmp_path, capsys):
  root = tmp_path / "manual"
  _write_spin_dataset(root, n=13)
  _break_rows(root, [1, 2, 3, 4, 7, 8, 9, 10])  # the case: 5 of 13 rows kept
  argv = ["spin", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(root)]
  argv += ["--datasets", "h36m", "--skip_bad"]
  (out,) = build.main(argv)
  report = json.loads((out / "build_report.json").read_text())
  assert report["num_rows"] == 13 and len(report["skipped"]) == 8
  src = builders.open_source(tmp_path / "tfds", "spin_format/h36m", "train")
  kept = sorted(int(src[i]["index"]) for i in range(len(src)))
  assert kept == [0, 5, 6, 11, 12]
  # The table spans the annotation file: every kept record's index has its own row.
  ds, rows = train.dataset_rows(str(tmp_path / "tfds"), "spin_format/h36m", "train")
  assert rows == 13
  layout = fits_lib.Layout(((ds, rows), (20, 16)))
  assert layout.rows(20).start == 13  # the next dataset's people start after all 13 rows

  # A rebuild of the prepared set keeps the skipped rows (it used to write none).
  capsys.readouterr()
  build.main(argv)
  again = json.loads((out / "build_report.json").read_text())
  assert again["skipped"] == report["skipped"] and again["num_rows"] == 13
  assert "8 skipped" in capsys.readouterr().out
  # A changed annotation file is refused: the records' indices would not match it.
  npz = root / "dataset_extras" / "h36m_train.npz"
  with np.load(npz) as z:
    arrays = {k: z[k] for k in z.files}
  np.savez(npz, **{k: v[:12] for k, v in arrays.items()})
  with pytest.raises(SystemExit, match=r"built from another h36m_train.npz .*delete"):
    build.main(argv)
  # A dataset prepared without a row count (older builds) is refused, not guessed.
  (out / "build_report.json").unlink()
  with pytest.raises(ValueError, match=r"no row count .*rerun `python -m spin_jax.data.build"):
    train.dataset_rows(str(tmp_path / "tfds"), "spin_format/h36m", "train")


def test_record_outside_its_dataset_rows_is_refused():
  rows = {1: 5, 20: 16}
  batch = {"dataset_id": np.array([1, 20, 1]), "index": np.array([0, 15, 4])}
  train.check_batch_rows(batch, rows, 1)
  batch["index"] = np.array([0, 15, 5])
  with pytest.raises(ValueError, match=r"step 7: records \(dataset_id, index\) \[\(1, 5\)\]"):
    train.check_batch_rows(batch, rows, 7)


# -- 3: fits for other data ---------------------------------------------------------------------


def _fits_of(data_dir, split, path, **keys):
  """Exact fits of a split, made (by default) from another dataset's file."""
  n = builders.split_sizes(data_dir, "spin_synthetic/tiny")[split]
  made_from = dict(source=np.full(n, "coco_2014_train.npz"), source_sha256=np.full(n, "ab" * 32))
  return _ground_truth_fits(data_dir, path, split=split, **(made_from | keys))


def _evaluate(path, data_dir, split="validation"):
  source = eval_lib.fits_source(path, str(smpl_jax.open_model_path("low")), 64)
  return eval_lib.evaluate(
    source, "spin_synthetic/tiny", split, str(data_dir), batch_size=4, progress=False
  )


def test_fits_made_from_another_file_are_refused_and_its_own_accepted(data_dir, tmp_path):
  _fits_of(data_dir, "validation", tmp_path / "coco.npz")
  # Nothing recorded for this split yet: a fits file whose input cannot be confirmed is refused.
  with pytest.raises(fits_lib.FitsMismatch, match=r"made from coco_2014_train.npz \(sha256 abab"):
    _evaluate(tmp_path / "coco.npz", data_dir)
  # Export the split's keypoints (the fitter's input): fits of that file are accepted ...
  exported = build.export_keypoints(
    data_dir, "spin_synthetic/tiny", "validation", tmp_path / "val_kp.npz"
  )
  with np.load(exported) as z:
    assert z["openpose"].shape == (4, 25, 3) and "part" not in z.files
  sha = json.loads(
    (builders.dataset_dir(data_dir, "spin_synthetic/tiny") / "exports.json").read_text()
  )
  sha = [e["sha256"] for e in sha if e["split"] == "validation"][0]
  _fits_of(
    data_dir, "validation", tmp_path / "own.npz",
    source=np.full(4, "val_kp.npz"), source_sha256=np.full(4, sha),
  )  # fmt: skip
  summary, _ = _evaluate(tmp_path / "own.npz", data_dir)
  assert summary["count"] == 4 and summary["mpjpe"] < 1e-3
  # ... and any other file, or the same name with other content, is refused naming both.
  with pytest.raises(fits_lib.FitsMismatch, match=r"coco_2014_train.npz .*not from .*val_kp.npz"):
    _evaluate(tmp_path / "coco.npz", data_dir)
  _fits_of(data_dir, "validation", tmp_path / "renamed.npz", source=np.full(4, "val_kp.npz"))
  with pytest.raises(fits_lib.FitsMismatch, match="not from spin_synthetic/tiny/validation"):
    _evaluate(tmp_path / "renamed.npz", data_dir)
  # The trainer's initial fits table applies the same rule (here: fits of the wrong split).
  _fits_of(
    data_dir, "train", tmp_path / "train.npz",
    source=np.full(16, "val_kp.npz"), source_sha256=np.full(16, sha),
  )  # fmt: skip
  cfg = tiny_config(
    data_dir, tmp_path / "w", **{"data.fits_files": ("tiny=" + str(tmp_path / "train.npz"),)}
  )
  layout = train.layout_of(cfg)
  with pytest.raises(fits_lib.FitsMismatch, match="val_kp.npz .*spin_synthetic/tiny/train"):
    train.create_state(cfg, layout, train.make_optimizer(cfg))


def test_eval_names_nonfinite_fits_and_split_typos(data_dir, tmp_path):
  build.export_keypoints(data_dir, "spin_synthetic/tiny", "validation", tmp_path / "v.npz")
  reg = builders.dataset_dir(data_dir, "spin_synthetic/tiny") / "exports.json"
  sha = [e["sha256"] for e in json.loads(reg.read_text()) if e["file"] == "v.npz"][0]
  arrays = _fits_of(
    data_dir, "validation", tmp_path / "nan.npz",
    source=np.full(4, "v.npz"), source_sha256=np.full(4, sha),
  )  # fmt: skip
  arrays["pose"][2] = np.nan
  arrays["reason"] = arrays["reason"].astype("<U80")
  arrays["reason"][2] = "fit did not improve on its start or turned non-finite"
  write_npz_atomic(tmp_path / "nan.npz", **arrays)
  with pytest.raises(
    ValueError, match=r"dataset row\(s\) \[2\] are not finite .*turned non-finite"
  ):
    _evaluate(tmp_path / "nan.npz", data_dir)
  with pytest.raises(ValueError, match=r"has no split 'tset'; it has \['train', 'validation'\]"):
    _evaluate(tmp_path / "nan.npz", data_dir, split="tset")


# -- 4, 10: runs that cannot go backwards, SIGTERM, failed saves -------------------------------


def test_sigterm_saves_then_same_command_resumes_and_steps_cannot_go_back(
  data_dir, tmp_path, monkeypatch
):
  cfg = tiny_config(data_dir, tmp_path / "p", steps=6, checkpoint_every=1000)
  real = train.check_batch_rows

  def preempt_at_step_3(batch, rows, step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # arrives while step 3 is being prepared
    return real(batch, rows, step)

  monkeypatch.setattr(train, "check_batch_rows", preempt_at_step_3)
  with pytest.raises(train.Preempted, match=r"SIGTERM after step 3: saved .*checkpoints/3"):
    train.run(cfg)
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
  monkeypatch.setattr(train, "check_batch_rows", real)
  out = train.run(cfg)  # the same command: resumes from step 3, no step lost but in-flight
  assert out["step"] == 6
  steps = sorted(int(p.name) for p in (tmp_path / "p" / "checkpoints").iterdir())
  assert steps == [3, 6]
  before = {f: (tmp_path / "p" / f).read_text() for f in ("result.json", "config.json")}
  with pytest.raises(ValueError, match=r"at step 6, beyond --config.steps=4: nothing was"):
    train.run(tiny_config(data_dir, tmp_path / "p", steps=4))
  assert before == {f: (tmp_path / "p" / f).read_text() for f in before}


def test_failed_checkpoint_save_is_one_error_and_leaves_no_partial_folder(tmp_path):
  cfg = spin_config.TrainConfig(keep_checkpoints=2)
  mngr = train.checkpoint_manager(tmp_path, cfg)
  state = {"w": np.random.default_rng(0).random((512, 512), np.float32)}  # 1 MiB, random
  it = iter(grain.MapDataset.range(8).to_iter_dataset())
  train.save_checkpoint(mngr, 1, state, it)
  # A write limit stands in for a full disk: writes past 64 KiB fail with EFBIG.
  old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
  old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))
  try:
    with pytest.raises(
      train.CheckpointError, match=r"saving checkpoint 2 .* failed .*newest .* 1"
    ):
      train.save_checkpoint(mngr, 2, state, it)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)
  left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert left == ["1"], left
  # A step orbax will not write (not newer than its newest) is an error, not a silent no-op.
  with pytest.raises(train.CheckpointError):
    train.save_checkpoint(mngr, 1, state, it)
  got = mngr.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  np.testing.assert_array_equal(got["state"]["w"], state["w"])


# -- 12: one-line errors ------------------------------------------------------------------------


def test_config_intervals_must_be_positive():
  for key in ("checkpoint_every", "eval_every", "log_every", "image_every", "batch_size"):
    with pytest.raises(ValueError, match=rf"--config.{key}=0: must be a positive integer"):
      spin_config.from_config_dict({key: 0})


def test_missing_training_set_is_named_before_anything_is_built(tmp_path):
  cfg = tiny_config(
    tmp_path / "tfds",
    tmp_path / "w",
    **{
      "data.train": ("spin_synthetic/tiny", "spin_format/coco"),
      "data.val": "spin_synthetic/tiny",
    },
  )
  with pytest.raises(FileNotFoundError, match=r"no prepared dataset 'spin_format/coco'"):
    train.run(cfg)
  assert not (tmp_path / "tfds" / "spin_synthetic").exists()  # nothing was rendered first


def test_project_npz_missing_keys_is_named(tmp_path):
  with np.load(smpl_jax.open_model_path("low")) as z:
    arrays = {k: z[k] for k in z.files if k not in ("weights", "weights_rows")}
  np.savez(tmp_path / "cut.npz", **arrays)
  with pytest.raises(ValueError, match=r"has format_version\) but lacks \['weights'\]"):
    smpl_jax.load_model(tmp_path / "cut.npz")
  assert jax.tree.leaves(smpl_jax.load_model(smpl_jax.open_model_path("low")))
