"""Unit 1, deep-learning foundations: what lessons 01-05 and lab 1 import beyond the core.

Lesson 01's NumPy MLP, the Playground, framework comparisons and evaluation tables.
"""
