"""Scaling out on engines users already run: Ray Data for extraction and prediction.

(Distributed training is :mod:`graft.training.distributed`, under torchrun.) Nothing here is
imported unless asked for, so graft works without Ray installed.
"""
