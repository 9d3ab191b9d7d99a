"""The CPU model organism of reward hacking — organism.md. Not built yet."""
