"""Electrical losses between the incomers and the PDUs: UPS modules and transformers."""

from __future__ import annotations

import numpy as np

from pueflow.config.plant import ElectricalSpec

#: Power factor used to turn kW into transformer kVA loading.
POWER_FACTOR = 0.95


def ups_loss_kw(spec: ElectricalSpec, units: int, load_kw: np.ndarray) -> np.ndarray:
    """Loss of each UPS module [kW], shape (n, units); load shared equally.

    ``loss = P_out * (1 / eta(x) - 1)`` with ``eta`` interpolated in the configured
    efficiency curve at load fraction ``x = P_out / rated`` (held flat outside it).
    """
    if units == 0:
        return np.zeros((len(load_kw), 0))
    per = load_kw / units
    eta = np.interp(per / spec.ups_rated_kw, spec.ups_load_fraction, spec.ups_efficiency)
    return np.repeat((per * (1.0 / eta - 1.0))[:, None], units, axis=1)


def transformer_loss_kw(spec: ElectricalSpec, rated_kva: float, load_kw: np.ndarray) -> np.ndarray:
    """Iron (constant) plus copper (~ loading squared) loss of the transformer bank [kW]."""
    x = load_kw / POWER_FACTOR / rated_kva
    return rated_kva * (spec.transformer_no_load_fraction + spec.transformer_load_loss_fraction * x * x)
