#!/bin/bash
# SPIN on a TPU pod slice: the same command on every host (gcloud's --worker=all), each host
# feeding its share of the global batch. jax.distributed.initialize() finds the slice by itself.
#
#   TPU=my-v4-32 ZONE=us-central2-b DATA=gs://bucket/spin bash experiments/launch/train_tpu_pod.sh
set -euo pipefail
: "${TPU:?name of the TPU VM slice}" "${ZONE:?its zone}" "${DATA:?data root (tfds, smpl, ...)}"
WORKDIR=${WORKDIR:-$DATA/runs/spin_mixed}
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "
  cd ~/spin-jax && .venv/bin/python -m spin_jax.train --distributed \
    --config experiments/configs/spin_mixed.py --workdir $WORKDIR \
    --config.data.data_dir=$DATA/tfds --config.body_model=$DATA/smpl/SMPL_NEUTRAL.pkl \
    --config.prior=$DATA/gmm_08.pkl --config.model.mean_params=$DATA/smpl_mean_params.npz \
    --config.model.pretrained=$DATA/resnet50_imagenet.safetensors"
