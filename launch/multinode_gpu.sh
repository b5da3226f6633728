#!/usr/bin/env bash
# Multi-node GPU training without a scheduler: run this on every node, one process per node
# seeing all of its GPUs, with the same COORDINATOR (host:port of node 0).
#   NODE_RANK=0 NUM_NODES=2 COORDINATOR=node0:12355 launch/multinode_gpu.sh configs/gmm.py /shared/run1
set -euo pipefail
config=${1:?config file}
workdir=${2:?shared workdir}
shift 2
python -m mgvton_jax.train --config "$config" --workdir "$workdir" \
  --coordinator_address "${COORDINATOR:?host:port of node 0}" \
  --num_processes "${NUM_NODES:?number of nodes}" --process_id "${NODE_RANK:?this node}" "$@"
