"""Run directories and the files that travel between trainctl and other runtimes."""
