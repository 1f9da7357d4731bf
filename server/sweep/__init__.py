"""Sweeps: many runs of one design, searched with Optuna (ask/tell) and run as ordinary runs.

The domain layer, without web imports: ``spec`` validates a sweep, ``search`` wraps the Optuna
study (samplers, pruners, prune reasons), ``core.Sweep`` keeps the trials and emits events,
``runner.LocalRunner`` runs trials in local worker processes, ``presets`` names ready sweeps.
Import the submodules (this package imports nothing, so ``backprop-lab train`` does not pay
for Optuna's import).
"""
