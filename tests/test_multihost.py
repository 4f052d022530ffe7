"""Two processes on localhost (`jax.distributed`, 4 simulated CPU devices each) train (SMPLify in
the loop), save, resume and evaluate as one process on one device does: the same global
batches, the same steps, the same fits, checkpoints and validation numbers, up to float32
reduction order. This also covers sharding itself: eight devices against one."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from test_train import ROOT, tiny_config

from spin_jax import train


def _final_local(workdir):
  """(step, state) of a run's newest checkpoint, restored onto this process's one device
  whatever devices saved it."""
  import orbax.checkpoint as ocp

  step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  path = (workdir / "checkpoints" / str(step) / "state").absolute()
  ckpt = ocp.StandardCheckpointer()
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev),
    ckpt.metadata(path).item_metadata,
  )
  return step, ckpt.restore(path, target)


def _floats(tree):
  leaves = [x for x in jax.tree.leaves(tree) if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
  return np.concatenate([np.asarray(x, np.float64).ravel() for x in leaves])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


DEVICES = 4  # simulated CPU devices per process


def _env(devices):
  return dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )


def _train(cfg_file, workdir, steps, devices, *flags, log=None):
  """A training process; its output goes to files (a full pipe would stall it, and a stalled
  process stalls the others at their next collective)."""
  log = log or workdir.parent / f"{workdir.name}.log"
  out = open(log.with_suffix(".out"), "w")  # noqa: SIM115  (closed by _finish)
  err = open(log.with_suffix(".err"), "w")  # noqa: SIM115
  proc = subprocess.Popen(
    [sys.executable, "-m", "spin_jax.train", f"--config={cfg_file}", f"--workdir={workdir}"]
    + [f"--config.steps={steps}", *flags],
    cwd=ROOT,
    env=_env(devices),
    stdout=out,
    stderr=err,
  )
  return proc, (out, err)


def _finish(proc, files, timeout=400):
  proc.wait(timeout=timeout)
  for f in files:
    f.close()
  out, err = (Path(f.name).read_text() for f in files)
  assert proc.returncode == 0, err[-3000:]
  return out, err


def _run_two_processes(cfg_file, workdir, steps):
  port = _free_port()
  procs = [
    _train(
      cfg_file,
      workdir,
      steps,
      DEVICES,
      "--distributed",
      f"--coordinator=localhost:{port}",
      "--num_processes=2",
      f"--process_id={i}",
      log=workdir.parent / f"{workdir.name}-{steps}-{i}.log",
    )
    for i in range(2)
  ]
  return [_finish(p, files) for p, files in procs]


def test_two_processes_train_resume_and_evaluate_as_one(tiny_train_data, tmp_path):
  data_dir = tiny_train_data
  # A small learning rate: Adam turns float32 noise in near-zero gradients into whole steps.
  over = dict(batch_size=8, steps=4, checkpoint_every=2, eval_every=2, log_every=2, lr=1e-5)
  cfg_file = tmp_path / "cfg.py"
  cfg_file.write_text(
    textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(ROOT / "tests")!r})
    from test_train import tiny_config
    import dataclasses, ml_collections
    def get_config():
      cfg = tiny_config({str(data_dir)!r}, "unused", **{over!r})
      return ml_collections.ConfigDict(dataclasses.asdict(cfg))
    """)
  )
  multi = tmp_path / "multi"
  _run_two_processes(cfg_file, multi, steps=2)  # stops with checkpoint 2
  (out0, _), (out1, _) = _run_two_processes(cfg_file, multi, steps=4)  # resumes, ends at 4
  assert "resumed from" in out0 and "resumed from" in out1
  # Only process 0 writes the run's files.
  assert sorted(p.name for p in multi.iterdir() if p.is_file()) == [
    "baseline.json",
    "config.json",
    "result.json",
  ]
  single = train.run(tiny_config(data_dir, tmp_path / "single", **over))
  got = json.loads((multi / "result.json").read_text())
  assert got["step"] == single["step"] == 4
  for k in ("mpjpe", "pa_mpjpe"):
    np.testing.assert_allclose(got["val"][k], single["val"][k], rtol=1e-4)
    np.testing.assert_allclose(got["baseline"][k], single["baseline"][k], rtol=1e-6)
  assert got["val"]["count"] == single["val"]["count"] == 4
  (step_m, state_m), (step_s, state_s) = _final_local(multi), _final_local(tmp_path / "single")
  assert step_m == step_s == 4
  assert np.abs(np.asarray(state_s["fits"]["betas"])).max() > 0  # fits were made and kept
  for part in ("params", "rest", "fits"):
    np.testing.assert_allclose(_floats(state_m[part]), _floats(state_s[part]), atol=2e-4)


def test_process_rows_side_by_side_are_the_one_process_batches():
  import grain

  from spin_jax.data.pipeline import ProcessRows

  ds = grain.MapDataset.range(13)
  for processes, batch in [(2, 8), (2, 4), (4, 8)]:
    local = batch // processes
    parts = []
    for p in range(processes):
      rows = ProcessRows(ds, p, processes, batch)
      parts.append([rows.map(i) for i in range(len(rows))])
    assert sorted(sum(parts, [])) == list(range(13))  # every example once
    for k in range(13 // batch):  # batch k of every process, side by side: k B ... k B + B - 1
      side = sum((part[k * local : (k + 1) * local] for part in parts), [])
      assert side == list(range(k * batch, (k + 1) * batch))


def test_remote_paths_stay_remote_and_unreachable_ones_are_named(tmp_path):
  assert str(train.run_path("gs://bucket/run") / "checkpoints") == "gs://bucket/run/checkpoints"
  assert train.run_path("relative/run").is_absolute()
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(ValueError, match=r"cannot create or reach --workdir .*a_file/run"):
    train.prepare_workdir(train.run_path(blocker / "run"))
