"""GRPO training on TRL with projection, arms and oracle-free logging — method.md §4–6. Not built yet."""
