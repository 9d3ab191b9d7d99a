"""Arm × seed experiment matrices, statistics and reports — method.md §5. Not built yet."""
