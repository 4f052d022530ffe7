"""SPIN on its datasets (SPIN_SPEC 7): ResNet-50 from ImageNet weights, SPIN's mixing, SMPLify
in the loop with SPIN's settings, batch 64, Adam 5e-5. For clusters; build the datasets first:

  python -m spin_jax.data.build spin --data_dir $DATA/tfds --manual_dir $DATA/spin \
      --datasets h36m,lsp-orig,mpii,lspet,coco,mpi-inf-3dhp,h36m-p1
  python -m spin_jax.train --config experiments/configs/spin_mixed.py \
      --config.data.data_dir=$DATA/tfds --config.body_model=$DATA/smpl/SMPL_NEUTRAL.pkl \
      --config.prior=$DATA/gmm_08.pkl --config.model.mean_params=$DATA/smpl_mean_params.npz \
      --config.model.pretrained=$DATA/resnet50_imagenet.safetensors \
      --config.data.fits_files='("h36m=$DATA/fits/h36m.npz","mpii=$DATA/fits/mpii.npz")'

SPIN's static fits (or the standalone fitter's output, `python -m fitting.cli`) initialise the
fits dictionary per dataset; datasets without a file start from the mean pose.
"""

from spin_jax.config import default_config_dict


def get_config():
  c = default_config_dict()
  c.workdir = "outputs/spin_mixed"
  c.batch_size = 64
  c.lr = 5e-5
  # SPIN trains 50 "epochs" of len(H36M) / 64 steps; ~312k H36M crops give ~244k steps.
  c.steps = 250_000
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 5_000
  c.image_every = 5_000
  c.keep_checkpoints = 3
  c.model.backbone = "resnet50"
  c.model.img_res = 224
  c.fit.num_iters = 100
  c.data.train = (
    "spin_format/h36m",
    "spin_format/lsp_orig",
    "spin_format/mpii",
    "spin_format/lspet",
    "spin_format/coco",
    "spin_format/mpi_inf_3dhp",
  )
  c.data.val = "spin_format/h36m_p1"
  c.data.val_split = "test"
  c.data.val_examples = 5_000
  c.data.build_synthetic = False
  c.data.num_threads = 16
  return c
