"""The README's main job: SPIN on the synthetic dataset with the open body model, sized to
train on a 2-core CPU in about 10 minutes (small backbone, 128 px input, short fits).

  python -m spin_jax.train --config experiments/configs/synthetic.py --workdir outputs/train
"""

from spin_jax.config import default_config_dict


def get_config():
  c = default_config_dict()
  c.batch_size = 32
  c.lr = 1e-4  # SPIN: 5e-5 to fine-tune an ImageNet ResNet-50; from scratch 1e-4 (3e-4 diverges)
  c.steps = 2500
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 250
  c.image_every = 500
  c.model.backbone = "small"
  c.model.img_res = 128
  c.fit.num_iters = 20
  c.fit.step_size = 0.03
  c.data.train = ("spin_synthetic/main",)
  c.data.val = "spin_synthetic/main"
  c.data.val_examples = 500
  c.data.synthetic_sizes = (4000, 500, 500)
  return c
