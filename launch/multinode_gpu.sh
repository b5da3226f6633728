#!/usr/bin/env bash
# Multi-node GPU training without a scheduler: run this on every node, one process per node
# that drives all the node's GPUs, with the same coordinator (host:port of node 0, reachable
# from every node). Written for Linux nodes with NVIDIA GPUs and a shared file system.
#
#   launch/multinode_gpu.sh [--dry-run] COORDINATOR NUM_NODES NODE_RANK CONFIG WORKDIR DATA_DIR [flags...]
#   e.g. on node 1 of 2: launch/multinode_gpu.sh node0:12355 2 1 configs/warp_gan.py /shared/run1 /shared/mpv_tfds
#
# Every node runs the same command with its own NODE_RANK (0 .. NUM_NODES-1); the global batch
# (config.train.batch_size) must divide by the total GPU count. The command is printed before
# it runs; --dry-run only prints it.
set -euo pipefail
dry_run=
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 6 ]; then
  echo "usage: $0 [--dry-run] COORDINATOR NUM_NODES NODE_RANK CONFIG WORKDIR DATA_DIR [flags...]" >&2
  exit 2
fi
coordinator=$1 nodes=$2 rank=$3 config=$4 workdir=$5 data_dir=$6
shift 6
case "$coordinator" in
  *:[0-9]*) ;;
  *) echo "error: COORDINATOR must be host:port, got '$coordinator'" >&2; exit 2 ;;
esac
if ! [[ "$nodes" =~ ^[1-9][0-9]*$ && "$rank" =~ ^[0-9]+$ ]] || [ "$rank" -ge "$nodes" ]; then
  echo "error: NODE_RANK must be 0 .. NUM_NODES-1, got rank '$rank' of '$nodes'" >&2
  exit 2
fi
command=(python -m mgvton_jax.train --config "$config" --workdir "$workdir"
         "--config.data.data_dir=$data_dir" --coordinator-address "$coordinator"
         --num-processes "$nodes" --process-id "$rank" "$@")
printf '+'
printf ' %q' "${command[@]}"
printf '\n'
if [ -z "$dry_run" ]; then
  "${command[@]}"
fi
