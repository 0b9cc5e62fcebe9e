"""LoRA training with peft + trl: settings, training data, losses and the trainers (SFT, DPO, SFT->DPO)."""
