"""LoRA training with peft + trl: settings, training data, losses, the shared plumbing (common) and one
module per method: sft, dpo (also SFT->DPO), grpo (its episodes in episodes)."""
