"""Backprop Lab's web server: FastAPI over the engine, training in worker processes.

Nothing here does math: the engine (``engine/``) trains, validates and predicts;
this package stores, schedules, streams and guards.
"""
