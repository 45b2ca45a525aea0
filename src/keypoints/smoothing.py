"""The One Euro filter (Casiez, Roussel and Vogel, CHI 2012): keypoints smoothed over time.

A low-pass filter whose cutoff rises with the speed of the signal: a face that holds still is
smoothed hard (its keypoints stop jittering from frame to frame), one that moves is followed closely
(little lag). Per value, with the time step dt between frames:
    speed = low-pass(d_cutoff) of (x - previous smoothed x) / dt
    cutoff = min_cutoff + beta * |speed|
    smoothed x = low-pass(cutoff) of x
where low-pass(f) blends alpha = 1 / (1 + 1 / (2 pi f dt)) of the new value into the old. min_cutoff and
d_cutoff are in Hz, beta in 1 / pixel (speed is in pixels per second). Vectorised: one filter smooths all
30 values of a face, each with its own speed.
"""
import math

import numpy as np


def smoothing_factor(cutoff, dt):
    """alpha of an exponential low-pass filter of `cutoff` Hz sampled every `dt` seconds."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64) * dt))


class OneEuroFilter:
    """Call it with each frame's values (any shape) and that frame's time in seconds; it returns them smoothed.

    The first call returns its values as they are. A time that does not advance (a repeated frame)
    returns the last smoothed values unchanged."""

    def __init__(self, min_cutoff, beta, d_cutoff):
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not value > 0:
                raise ValueError(f"the One Euro filter's {name} must be above 0 Hz, not {value}")
        if not beta >= 0:
            raise ValueError(f"the One Euro filter's beta must be at least 0, not {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.previous = self.speed = self.time = None

    def __call__(self, values, time_s):
        values = np.asarray(values, np.float64)
        if self.previous is None:
            self.previous, self.speed, self.time = values.copy(), np.zeros_like(values), float(time_s)
            return values.copy()
        dt = float(time_s) - self.time
        if dt <= 0:
            return self.previous.copy()
        # A value the model could not give (NaN) restarts from the next one it gives.
        known = np.isfinite(values) & np.isfinite(self.previous)
        speed = np.where(known, (values - self.previous) / dt, 0.0)
        self.speed = self.speed + smoothing_factor(self.d_cutoff, dt) * (speed - self.speed)
        alpha = smoothing_factor(self.min_cutoff + self.beta * np.abs(self.speed), dt)
        smoothed = np.where(known, self.previous + alpha * (values - self.previous), values)
        self.previous, self.time = smoothed, float(time_s)
        return smoothed.copy()
