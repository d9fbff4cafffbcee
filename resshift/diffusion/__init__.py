"""Diffusion schedules and samplers (no networks, no files)."""

from resshift.diffusion.resshift_chain import (
    SampleResult,
    StepRecord,
    p_mean_variance,
    prior_sample,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
    sample,
    scale_input,
    training_loss,
)
from resshift.diffusion.schedule import ResShiftSchedule, exponential_sqrt_etas

__all__ = [
    "ResShiftSchedule",
    "SampleResult",
    "StepRecord",
    "exponential_sqrt_etas",
    "p_mean_variance",
    "prior_sample",
    "q_mean_variance",
    "q_posterior_mean_variance",
    "q_sample",
    "sample",
    "scale_input",
    "training_loss",
]
