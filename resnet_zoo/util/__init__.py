"""Helpers every package uses: number checks, atomic writes and locks, file integrity and the
cache's path rule, torchrun's environment, progress bars, charts. Nothing here imports the
rest of resnet_zoo but its errors."""
