"""Unit 2, GPU kernels in Numba: what lessons 06-10 and labs 2-3 import beyond the core.

The lessons' kernels, launch configurations and occupancy, the roofline, profiling.
"""
