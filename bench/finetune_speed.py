"""Fine-tuning's trainable part: contiguous (NCHW) vs channels-last (NHWC) memory, in one run.

An unfrozen epoch of ``graft train --strategy finetune`` runs the frozen lower stages on the
inference engine and, in PyTorch, the forward, backward and AdamW step of the top stages and
the head. This times that PyTorch step at the freeze boundary of ``--unfreeze N`` on one
batch (random pixels through the real lower part; the batch's conversion from the engine's
contiguous output timed with the step), the two memory layouts alternating, each first in every
other round, so that both see the same machine; it stops unless both give the same logits and
gradients.

Usage:
    .venv/bin/python bench/finetune_speed.py [--backbone efficientnet_lite0.in1k]
        [--unfreeze 3] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from graft.models.transfer import build_transfer_model
from graft.training.stages import backbone_stages, split_network


def _trainable(backbone: str, unfreeze: int) -> tuple[nn.Module, nn.Module]:
    """The frozen lower part and, as the trainer builds it, the top stages with graft's head."""
    model = build_transfer_model(backbone, num_classes=2)
    net = model.backbone.net
    split = split_network(net, backbone_stages(net), unfreeze)
    if split is None:
        raise SystemExit(f"graft cannot cut {backbone} below its top {unfreeze} stages")
    lower, upper = split
    trainable = nn.Sequential(upper, model.head).train()
    for module in trainable.modules():  # graft's default --bn eval: pretrained statistics kept
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return lower.eval(), trainable


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    boundary: torch.Tensor,
    y: torch.Tensor,
    layout: torch.memory_format,
) -> torch.Tensor:
    """One training step as the trainer takes it: the batch from the frozen part (contiguous,
    as the engine returns it) laid out first, then forward, backward and AdamW."""
    logits = model(boundary.contiguous(memory_format=layout))
    loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0.in1k")
    parser.add_argument("--unfreeze", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    lower, first = _trainable(args.backbone, args.unfreeze)
    with torch.no_grad():
        boundary = lower(torch.randn(args.batch, 3, 224, 224))
    y = torch.randint(0, 2, (args.batch,))
    layouts = {
        "contiguous": (first, torch.contiguous_format),
        "channels_last": (
            copy.deepcopy(first).to(memory_format=torch.channels_last),
            torch.channels_last,
        ),
    }
    # the same weights and the same first step in both layouts
    first_logits, grads = {}, {}
    for name, (model, layout) in layouts.items():
        torch.manual_seed(1)  # the same dropout mask
        logits = model(boundary.contiguous(memory_format=layout))
        nn.functional.cross_entropy(logits, y).backward()
        first_logits[name] = logits.detach()
        grads[name] = torch.cat(
            [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        )
        model.zero_grad(set_to_none=True)
    logit_gap = float((first_logits["contiguous"] - first_logits["channels_last"]).abs().max())
    grad_gap = float((grads["contiguous"] - grads["channels_last"]).abs().max())
    grad_scale = float(grads["contiguous"].abs().max())
    if not (logit_gap < 1e-4 and grad_gap < 1e-4 * grad_scale):
        raise SystemExit(f"the layouts disagree: logits by {logit_gap}, gradients by {grad_gap}")
    optimizers = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in layouts.items()
    }
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for name, (model, layout) in layouts.items():  # warm-up
        _step(model, optimizers[name], boundary, y, layout)
    for repeat in range(args.repeats):
        # each layout goes first in every other round
        order = list(layouts) if repeat % 2 == 0 else list(reversed(layouts))
        for name in order:
            model, layout = layouts[name]
            start = time.perf_counter()
            _step(model, optimizers[name], boundary, y, layout)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"{args.backbone}, top {args.unfreeze} stages + head, batch {args.batch} at the boundary "
        f"{tuple(boundary.shape[1:])}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}:"
    )
    for name, value in median.items():
        print(f"  {name:<14} {value:6.3f} s a step ({args.batch / value:5.1f} img/s)")
    print(f"  contiguous / channels_last = {median['contiguous'] / median['channels_last']:.2f}x")
    print(
        f"  same result: largest logit gap {logit_gap:.1e}, largest gradient gap {grad_gap:.1e} "
        f"(largest gradient {grad_scale:.1e})"
    )


if __name__ == "__main__":
    main()
