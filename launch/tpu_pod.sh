#!/usr/bin/env bash
# Cloud TPU VM pod slice: create it, set up every worker, train on all workers, delete it.
# Written for TPU v4 / v5e / v5p pod slices with the tpu-ubuntu2204-base software version.
#
#   launch/tpu_pod.sh [--dry-run] create TPU_NAME ZONE ACCELERATOR    # e.g. v4-32
#   launch/tpu_pod.sh [--dry-run] setup  TPU_NAME ZONE REPO_URL BUCKET
#   launch/tpu_pod.sh [--dry-run] train  TPU_NAME ZONE BUCKET CONFIG RUN [flags...]
#   launch/tpu_pod.sh [--dry-run] delete TPU_NAME ZONE
#
# setup clones the repository on every worker, installs it with jax[tpu] and mounts the GCS
# bucket with gcsfuse at /mnt/BUCKET, so that every worker sees the same data set and workdir
# as ordinary files (the training writes checkpoints, logs and pictures there). train runs the
# same command on every worker with --distributed: JAX finds the other workers itself. The
# data set is built once into /mnt/BUCKET/data (python -m mgvton_jax.data.build ... on one
# worker) and the run goes to /mnt/BUCKET/RUN. Every command is printed before it runs;
# --dry-run only prints them.
set -euo pipefail

JAX_VERSION=0.10.2
SOFTWARE_VERSION=tpu-ubuntu2204-base

usage() {
  sed -n '5,8p' "$0" | sed 's/^#  */usage: /' >&2
  exit 2
}

dry_run=
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi

run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ -z "$dry_run" ]; then
    "$@"
  fi
}

on_all_workers() {  # TPU_NAME ZONE COMMAND
  run gcloud compute tpus tpu-vm ssh "$1" --zone="$2" --worker=all --command="$3"
}

action=${1:-}
[ -n "$action" ] || usage
shift
case "$action" in
  create)
    [ $# -eq 3 ] || usage
    run gcloud compute tpus tpu-vm create "$1" --zone="$2" --accelerator-type="$3" \
      --version="$SOFTWARE_VERSION"
    ;;
  setup)
    [ $# -eq 4 ] || usage
    tpu=$1 zone=$2 repo=$3 bucket=$4
    on_all_workers "$tpu" "$zone" "set -e; \
if [ -d mgvton-jax ]; then git -C mgvton-jax pull --ff-only; else git clone $repo mgvton-jax; fi; \
python3 -m pip install -e ./mgvton-jax 'jax[tpu]==$JAX_VERSION' \
-f https://storage.googleapis.com/jax-releases/libtpu_releases.html; \
echo 'deb https://packages.cloud.google.com/apt gcsfuse-jammy main' | sudo tee /etc/apt/sources.list.d/gcsfuse.list; \
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -; \
sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; \
sudo mkdir -p /mnt/$bucket && sudo chown \$USER /mnt/$bucket; \
mountpoint -q /mnt/$bucket || gcsfuse --implicit-dirs $bucket /mnt/$bucket"
    ;;
  train)
    [ $# -ge 5 ] || usage
    tpu=$1 zone=$2 bucket=$3 config=$4 name=$5
    shift 5
    extra=""
    for flag in "$@"; do
      extra+=" $(printf '%q' "$flag")"
    done
    on_all_workers "$tpu" "$zone" "cd mgvton-jax && python3 -m mgvton_jax.train --distributed \
--config $config --workdir /mnt/$bucket/$name --config.data.data_dir=/mnt/$bucket/data$extra"
    ;;
  delete)
    [ $# -eq 2 ] || usage
    run gcloud compute tpus tpu-vm delete "$1" --zone="$2" --quiet
    ;;
  *)
    usage
    ;;
esac
