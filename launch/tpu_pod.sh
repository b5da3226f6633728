#!/usr/bin/env bash
# Runs one training command on every worker of a Cloud TPU VM pod slice.
# With --distributed JAX finds the other workers itself (jax.distributed.initialize()).
#   launch/tpu_pod.sh TPU_NAME ZONE configs/warp_gan.py gs://BUCKET/run1 [--config.x=y ...]
# WORKDIR must be storage every worker reaches (a GCS bucket); so must --config.data.data_dir.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [extra flags]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd mgvton-jax && python -m mgvton_jax.train --distributed --config $config \
   --workdir $workdir $*"
