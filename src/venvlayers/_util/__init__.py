"""Private helpers shared by the stages: filesystem, subprocesses, hashing, ELF, HTTP."""
