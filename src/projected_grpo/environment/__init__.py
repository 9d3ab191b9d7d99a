"""The LeetCode reward-hacking environment: records, hints, loophole modes, sandboxed grader, rewards."""
