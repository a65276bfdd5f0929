"""Unit 3, training from one GPU to many: what lessons 11-14 and lab 4 import beyond the core.

The optimisation ladder, launching ranks (dist), DDP, collectives, model parallelism, scaling.
"""
