"""The two-stage generator of the paper (§3): network, training, checkpoints, generation."""
