"""projected_grpo: does projecting GRPO updates off a hack direction stop reward hacking?"""

__version__ = "0.1.0"
