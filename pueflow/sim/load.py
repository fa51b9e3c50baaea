"""IT load per rack: synchronous GPU training jobs plus diurnal inference.

Training racks are grouped into job slots (a job spans 4-16 racks that move together). A
slot cycles IDLE -> STARTUP (ramp) -> TRAIN (ripple, periodic checkpoint dips) -> IDLE when
the job ends; a failure anywhere in the job drops the whole slot to idle for a restart and
it resumes through STARTUP. Inference racks follow the local-time diurnal demand with AR(1)
noise. The state machine is a numba kernel that takes pre-drawn uniforms, so the result does
not depend on how the run is cut into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from pueflow.config.plant import LoadSpec
from pueflow.jit import njit

IDLE, STARTUP, TRAIN, CHECKPOINT, FAILED = 0, 1, 2, 3, 4
#: Parameter vector layout of :func:`_training_kernel`.
_P_NAMES = ("idle_level", "ckpt_level", "startup_s", "ckpt_interval_s", "ckpt_s", "job_s_mean",
            "idle_s_mean", "restart_s_mean", "level_min", "level_max", "ripple", "fail_rate_per_s")


@njit
def _training_kernel(dt_s, params, racks_per_slot, u, z, phase, left_s, job_left_s, ckpt_left_s,
                     level, out):  # pragma: no cover - numba
    """Advance every slot ``len(u)`` steps; write its power level / nameplate into ``out``.

    u : (n, slots, 3) uniforms (failure, duration, level); z : (n, slots) normals (ripple).
    State arrays (phase, left_s, job_left_s, ckpt_left_s, level) are updated in place.
    """
    idle, ckpt_level, startup_s, ckpt_every, ckpt_s = params[0], params[1], params[2], params[3], params[4]
    job_mean, idle_mean, restart_mean = params[5], params[6], params[7]
    lo, hi, ripple, fail_rate = params[8], params[9], params[10], params[11]
    n, slots = u.shape[0], u.shape[1]
    for k in range(n):
        for s in range(slots):
            p = phase[s]
            ud = u[k, s, 1]
            if p == TRAIN or p == CHECKPOINT:
                job_left_s[s] -= dt_s
                if u[k, s, 0] < fail_rate * racks_per_slot[s] * dt_s:
                    p = FAILED
                    left_s[s] = -restart_mean * np.log(1.0 - ud) + 60.0
                elif job_left_s[s] <= 0.0:
                    p = IDLE
                    left_s[s] = -idle_mean * np.log(1.0 - ud) + 60.0
            if p == TRAIN:
                ckpt_left_s[s] -= dt_s
                if ckpt_left_s[s] <= 0.0:
                    p = CHECKPOINT
                    left_s[s] = ckpt_s
                out[k, s] = level[s] * (1.0 + ripple * z[k, s])
            elif p == CHECKPOINT:
                left_s[s] -= dt_s
                if left_s[s] <= 0.0:
                    p = TRAIN
                    ckpt_left_s[s] = ckpt_every
                out[k, s] = ckpt_level
            elif p == IDLE or p == FAILED:
                left_s[s] -= dt_s
                if left_s[s] <= 0.0:
                    if p == IDLE:  # a new job: new length and power level
                        job_left_s[s] = -job_mean * np.log(1.0 - ud) + 3600.0
                        level[s] = lo + (hi - lo) * u[k, s, 2]
                    p = STARTUP
                    left_s[s] = startup_s
                out[k, s] = idle
            else:  # STARTUP
                left_s[s] -= dt_s
                frac = 1.0 - max(left_s[s], 0.0) / startup_s
                out[k, s] = idle + (level[s] - idle) * frac
                if left_s[s] <= 0.0:
                    p = TRAIN
                    ckpt_left_s[s] = ckpt_every * (0.5 + 0.5 * ud)
            phase[s] = p


@dataclass
class RackLoad:
    """Per-rack IT load generator; call :meth:`step` with consecutive chunks."""

    spec: LoadSpec
    nameplate_kw: np.ndarray      # (racks,)
    slot_of_rack: np.ndarray      # (racks,) slot index, -1 = inference
    racks_per_slot: np.ndarray    # (slots,)
    rng: np.random.Generator
    phase: np.ndarray
    left_s: np.ndarray
    job_left_s: np.ndarray
    ckpt_left_s: np.ndarray
    level: np.ndarray
    infer_zi: np.ndarray          # lfilter state of the inference noise

    def __post_init__(self) -> None:
        # one generator per per-step draw, so cutting the run into chunks changes nothing
        self._rng_u, self._rng_z, self._rng_eps = self.rng.spawn(3)

    @classmethod
    def build(cls, spec: LoadSpec, nameplate_kw: np.ndarray, rng: np.random.Generator) -> RackLoad:
        """Partition racks into training job slots and inference racks; random initial states."""
        n = len(nameplate_kw)
        n_train = round(spec.training_fraction * n)
        slot_of_rack = np.full(n, -1, np.int64)
        sizes: list[int] = []
        i = 0
        while i < n_train:
            size = min(int(rng.integers(spec.job_racks_min, spec.job_racks_max + 1)), n_train - i)
            slot_of_rack[i: i + size] = len(sizes)
            sizes.append(size)
            i += size
        slots = len(sizes)
        busy = rng.random(slots) < 0.85
        level = spec.train_level_min + (spec.train_level_max - spec.train_level_min) * rng.random(slots)
        return cls(
            spec=spec, nameplate_kw=nameplate_kw, slot_of_rack=slot_of_rack,
            racks_per_slot=np.asarray(sizes, np.float64), rng=rng,
            phase=np.where(busy, TRAIN, IDLE).astype(np.int64),
            left_s=rng.random(slots) * spec.idle_minutes_mean * 60.0,
            job_left_s=rng.random(slots) * spec.job_hours_mean * 3600.0 + 600.0,
            ckpt_left_s=rng.random(slots) * spec.checkpoint_interval_minutes * 60.0,
            level=level, infer_zi=rng.standard_normal(n))

    def params(self) -> np.ndarray:
        """Return the job model's parameters as the flat float array the kernel reads.

        Durations are converted to [s] and the failure rate to [1/s per rack]; levels are
        fractions of nameplate power.
        """
        s = self.spec
        return np.array([s.idle_level, s.checkpoint_level, s.startup_minutes * 60.0,
                         s.checkpoint_interval_minutes * 60.0, s.checkpoint_seconds,
                         s.job_hours_mean * 3600.0, s.idle_minutes_mean * 60.0,
                         s.restart_minutes_mean * 60.0, s.train_level_min, s.train_level_max,
                         s.ripple, s.failures_per_rack_day / 86400.0])

    def step(self, dt_s: float, local_hour: np.ndarray) -> np.ndarray:
        """Advance the load model and return IT power per rack [kW].

        Training racks follow their job slot's phase (startup, training, checkpoint, idle, failed);
        inference racks follow a diurnal curve with AR(1) noise (15 min time constant).
        The generator state and job phases carry over to the next call.

        Parameters
        ----------
        dt_s : float
            Sample period [s].
        local_hour : array [h]
            Local hour of day of each of the ``n`` samples; empty gives an empty result.

        Returns
        -------
        array [kW], shape (n, racks)
            Clipped to [0, 1.05] x nameplate.
        """
        n, slots = len(local_hour), len(self.racks_per_slot)
        u = self._rng_u.random((n, slots, 3))
        z = self._rng_z.standard_normal((n, slots))
        lvl = np.empty((n, slots))
        if slots:
            _training_kernel(float(dt_s), self.params(), self.racks_per_slot, u, z, self.phase,
                             self.left_s, self.job_left_s, self.ckpt_left_s, self.level, lvl)
        s = self.spec
        racks = len(self.nameplate_kw)
        eps = self._rng_eps.standard_normal((n, racks))
        phi = float(np.exp(-dt_s / 900.0))
        noise, self.infer_zi = lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], eps, axis=0,
                                       zi=self.infer_zi[None, :] * phi)
        self.infer_zi = noise[-1]
        diurnal = 0.5 + 0.5 * np.cos(2 * np.pi * (local_hour - s.inference_peak_hour_local) / 24.0)
        infer = (s.inference_trough_level
                 + (s.inference_peak_level - s.inference_trough_level) * diurnal)[:, None]
        infer = infer * (1.0 + s.inference_noise * noise)
        rack_level = np.where(self.slot_of_rack >= 0, lvl[:, np.maximum(self.slot_of_rack, 0)]
                              if slots else 0.0, infer)
        # small independent per-rack wobble on top of the job's synchronous level
        rack_level = rack_level * (1.0 + 0.005 * eps)
        return np.clip(rack_level, 0.0, 1.05) * self.nameplate_kw[None, :]
