"""Hack-direction extraction from contrastive pairs (gradient and activation space) — method.md §2. Not built yet."""
