#!/usr/bin/env bash
# GPU figures of stage 1: cifar and fast on CIFAR-10 (see bench_pretrain.sh).
exec bash "$(dirname "$0")/bench_pretrain.sh" --gpu
