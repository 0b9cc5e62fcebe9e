"""Margin-aware DPO: the loss, and trl's DPOTrainer subclass that applies it with a per-pair margin."""

from __future__ import annotations

import functools
from typing import Any


def margin_dpo_loss(
    chosen_logps: Any,
    rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    margins: Any,
    *,
    beta: float,
    margin_scale: float,
) -> Any:
    """Per-pair margin-aware DPO loss: −log σ(β·(Δ_policy − Δ_ref) − margin_scale·margin).

    Δ is log π(chosen) − log π(rejected) (summed over completion tokens). This is DPO with an offset
    (ODPO; the margin-aware objective of LearNAT): a pair whose chosen SQL earned a much higher reward than
    its rejected SQL asks the policy to prefer it by more before the loss flattens out. With margin 0 it is
    the plain sigmoid DPO loss; for the same log-probs a bigger margin gives a bigger loss.
    """
    import torch.nn.functional as F

    delta = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * delta - margin_scale * margins)


def offset_reference(ref_chosen_logps: Any, margins: Any, *, beta: float, margin_scale: float) -> Any:
    """Return the reference log π_ref(chosen) raised by margin_scale·margin/β.

    Feeding trl's DPO loss this shifted reference turns its β·(Δ_policy − Δ_ref) into
    β·(Δ_policy − Δ_ref) − margin_scale·margin: the loss of `margin_dpo_loss` (and for the hinge loss,
    relu(1 + margin_scale·margin − β·(Δ_policy − Δ_ref))).
    """
    return ref_chosen_logps + margin_scale * margins / beta


@functools.cache
def margin_trainer_class() -> type:
    """Return `MarginDPOTrainer` (defined lazily so that importing this module does not import trl)."""
    from trl import DPOTrainer

    class MarginDPOTrainer(DPOTrainer):
        """A DPOTrainer whose loss asks for a per-pair target margin (see `margin_dpo_loss`).

        It needs `precompute_ref_log_probs=True`: after trl has computed the reference log-probs of every
        pair, the reference log-prob of each chosen SQL is raised by margin_scale·margin/β
        (`offset_reference`), which turns trl's own loss into the margin-aware one without copying its loss
        code. trl's logged `rewards/chosen` and `rewards/margins` then include the offset: `rewards/margins`
        > 0 means that a pair beat its target margin, not just its reference.
        """

        def __init__(self, *args: Any, margin_scale: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.precompute_ref_logps:
                raise ValueError("MarginDPOTrainer needs precompute_ref_log_probs=True")
            beta = self.beta

            def shift(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                import torch

                shifted = offset_reference(
                    torch.tensor(batch["ref_chosen_logps"], dtype=torch.float64),
                    torch.tensor(batch["margin"], dtype=torch.float64),
                    beta=beta,
                    margin_scale=margin_scale,
                )
                return {"ref_chosen_logps": shifted.tolist()}

            self.train_dataset = self.train_dataset.map(
                shift, batched=True, desc="Offsetting by pair margins"
            )

    return MarginDPOTrainer
