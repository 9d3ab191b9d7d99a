"""`python -m projected_grpo.cli` (torchrun / accelerate launch use this)."""

from projected_grpo.cli import main

main()
