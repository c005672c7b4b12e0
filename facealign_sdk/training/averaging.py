"""An exponential moving average of a network's weights, validated and released instead of the raw weights.

Late in a run the raw weights wander around a minimum from batch to batch (on small data sets the fixed-box
validation NME moves by several hundredths from one checkpoint to the next); their running average sits
nearer its centre. Floating-point buffers (BatchNorm statistics) are averaged like the weights; integer ones
(BatchNorm's batch counters) are copied.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every optimiser step.

    The decay starts low and rises to ``decay`` (``(1 + n) / (10 + n)`` after ``n`` updates), so that the
    first updates of a run that starts from random weights do not keep those weights in the average.
    """

    def __init__(self, net: nn.Module, decay: float, updates: int = 0,
                 state: dict[str, torch.Tensor] | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.updates = updates
        live = net.state_dict()
        source = live if state is None else state
        if state is not None and set(state) != set(live):
            raise ValueError("the saved weight average holds other tensors than the network")
        self.state = {name: source[name].detach().clone().to(live[name].device) for name in live}

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards ``net``'s weights (after an optimiser step)."""
        keep = self.current_decay()
        floats, targets = [], []
        for name, value in net.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                floats.append(average)
                targets.append(value.detach())
            else:
                average.copy_(value)
        # one fused call for every tensor (as timm's ModelEmaV3): hundreds of small ones cost launches on a GPU
        torch._foreach_lerp_(floats, targets, 1.0 - keep)
        self.updates += 1

    def copy_to(self, net: nn.Module) -> nn.Module:
        """Load the averaged weights into ``net`` (another instance of the same network); returns it."""
        net.load_state_dict(self.state)
        return net
