"""`relora lab perf`: the harness, its rows, the plain-way references, and the child processes."""
