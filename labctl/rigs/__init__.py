"""Rigs: lab.toml, opening a chip's instruments, the lock on them, doctor, and serving a twin."""
