#!/usr/bin/env bash
# GPU figures of stage 1: cifar and fast on CIFAR-10 (see bench_pretrain.sh;
# the archive: an argument, $DH_CIFAR10, or the shared copy).
exec bash "$(dirname "$0")/bench_pretrain.sh" --gpu "$@"
