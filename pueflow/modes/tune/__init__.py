"""Tune mode: Optuna studies of dispatch settings over closed-loop backtests."""
