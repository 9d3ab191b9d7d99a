"""The projecting optimizer (measure / erase / route, grad or update space) — method.md §3. Not built yet."""
