"""The eta schedule: spec tables (exact printed values) and the official recordings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resshift.diffusion.schedule import ResShiftSchedule, exponential_sqrt_etas

# resshift-spec.md section 1.3, printed to 6 decimals
SPEC_V1_SQRT_ETAS = [0.020000, 0.117165, 0.176305, 0.233629, 0.291574, 0.351009, 0.412356, 0.475858,
                     0.541672, 0.609910, 0.680658, 0.753985, 0.829951, 0.908606, 0.990000]
SPEC_V1_POSTERIOR_STD = [0, 0.039413, 0.175100, 0.231363, 0.279563, 0.324673, 0.368416, 0.411601,
                         0.454677, 0.497922, 0.541520, 0.585600, 0.630256, 0.675563, 0.721578]
SPEC_V1_COEF1 = [0, 0.029138, 0.441641, 0.569474, 0.642030, 0.690019, 0.724590, 0.750915, 0.771760,
                 0.788753, 0.802922, 0.814952, 0.825318, 0.834359, 0.842328]
SPEC_V1_INPUT_STD = [1.000800, 1.027088, 1.060346, 1.103780, 1.157610, 1.221814, 1.296206, 1.380494,
                     1.474325, 1.577327, 1.689136, 1.809413, 1.937853, 2.074190, 2.218197]
SPEC_V3 = {
    "sqrt_etas": [0.100000, 0.520096, 0.761382, 0.990000],
    "etas": [0.010000, 0.270500, 0.579703, 0.980100],
    "alpha": [0.010000, 0.260500, 0.309202, 0.400397],
    "posterior_std": [0, 0.196268, 0.759683, 0.973292],
    "coef1": [0, 0.036969, 0.466619, 0.591473],
    "coef2": [1, 0.963031, 0.533381, 0.408527],
    "input_std": [1.019804, 1.442914, 1.821760, 2.218197],
}

V1 = dict(steps=15, kappa=2.0, min_noise_level=0.04, etas_end=0.99, power=0.3)
V3 = dict(steps=4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3)


def test_v1_matches_spec_table():
    s = ResShiftSchedule.from_config(**V1)
    np.testing.assert_allclose(s.sqrt_etas, SPEC_V1_SQRT_ETAS, atol=5e-7)
    np.testing.assert_allclose(np.sqrt(s.posterior_variance), SPEC_V1_POSTERIOR_STD, atol=5e-7)
    np.testing.assert_allclose(s.posterior_mean_coef1, SPEC_V1_COEF1, atol=5e-7)
    np.testing.assert_allclose(np.sqrt(s.kappa**2 * s.etas + 1), SPEC_V1_INPUT_STD, atol=5e-7)
    np.testing.assert_allclose(s.kappa * s.sqrt_etas[[0, -1]], [0.04, 1.98], atol=5e-7)


def test_v3_matches_spec_table():
    s = ResShiftSchedule.from_config(**V3)
    np.testing.assert_allclose(s.sqrt_etas, SPEC_V3["sqrt_etas"], atol=5e-7)
    np.testing.assert_allclose(s.etas, SPEC_V3["etas"], atol=5e-7)
    np.testing.assert_allclose(s.alpha, SPEC_V3["alpha"], atol=5e-7)
    np.testing.assert_allclose(np.sqrt(s.posterior_variance), SPEC_V3["posterior_std"], atol=5e-7)
    np.testing.assert_allclose(s.posterior_mean_coef1, SPEC_V3["coef1"], atol=5e-7)
    np.testing.assert_allclose(s.posterior_mean_coef2, SPEC_V3["coef2"], atol=5e-7)
    np.testing.assert_allclose(s.input_std_f32.numpy(), SPEC_V3["input_std"], atol=5e-7)


def test_ablation_rows_and_legacy_cap():
    # spec 1.3 extra rows: kappa=1 new code starts at 0.04, old code caps sqrt(eta_1) at sqrt(0.001)
    new = exponential_sqrt_etas(15, 0.04, kappa=1.0)
    old = exponential_sqrt_etas(15, 0.04, kappa=1.0, legacy_cap=True)
    np.testing.assert_allclose(new[[0, 1, 2, -1]], [0.04, 0.1712, 0.2395, 0.99], atol=5e-5)
    np.testing.assert_allclose(old[[0, 1, 2, -2, -1]], [0.0316, 0.1505, 0.2159, 0.9178, 0.99], atol=5e-5)
    p1 = exponential_sqrt_etas(15, 0.04, kappa=2.0, power=1.0)
    np.testing.assert_allclose(p1[[0, 1, 2, 3, 4, -3, -2, -1]],
                               [0.02, 0.0264, 0.0349, 0.0461, 0.0610, 0.5670, 0.7492, 0.99], atol=5e-5)
    p05 = exponential_sqrt_etas(15, 0.04, kappa=2.0, power=0.5)
    np.testing.assert_allclose(p05[[0, 1, 2, -2, -1]], [0.02, 0.0567, 0.0874, 0.8590, 0.99], atol=5e-5)


def test_schedule_invariants():
    s = ResShiftSchedule.from_config(**V1)
    assert s.posterior_mean_coef1[0] == 0.0 and s.posterior_mean_coef2[0] == 1.0
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1]
    np.testing.assert_allclose(s.posterior_mean_coef1 + s.posterior_mean_coef2, 1.0, atol=1e-15)
    assert np.all(np.diff(s.sqrt_etas) > 0)
    with pytest.raises(ValueError, match="steps >= 2"):
        ResShiftSchedule.from_config(steps=1)


_F64 = ["sqrt_etas", "etas", "etas_prev", "alpha", "posterior_variance", "posterior_variance_clipped",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "weight_loss_mse"]
_F32 = {"rt_etas_f32": "etas_f32", "rt_kappa_sqrt_etas_f32": "kappa_sqrt_etas_f32",
        "rt_posterior_mean_coef1_f32": "coef1_f32", "rt_posterior_mean_coef2_f32": "coef2_f32",
        "rt_posterior_variance_f32": "posterior_variance_f32",
        "rt_posterior_log_variance_clipped_f32": "posterior_log_variance_clipped_f32",
        "rt_p_sample_noise_std_f32": "noise_std_f32", "rt_scale_input_std_f32": "input_std_f32"}


@pytest.mark.parametrize("cfg,params", [("v1", V1), ("v3", V3), ("bicsr", V3)])
def test_schedule_matches_official_recording(golden, cfg, params):
    from golden_compare import assert_within_ulps
    from safetensors.torch import load_file

    g = load_file(str(golden / "golden_diffusion_schedules.safetensors"))
    s = ResShiftSchedule.from_config(**params)
    # float64: the recording's NumPy pow/log are within an ulp or so of the correctly rounded value on
    # any CPU, and pow is applied twice; 1e-14 relative (about 45 ulps) bounds what that can propagate
    for name in _F64:
        ref = g[f"{cfg}/{name}"].numpy()
        np.testing.assert_allclose(getattr(s, name), ref, rtol=1e-14, atol=0, err_msg=name)
    # float32 run-time coefficients: the official code's own values move by 1 ulp between AVX2 and
    # AVX-512 machines (one float64 ulp can cross a float32 rounding boundary)
    for ref_name, name in _F32.items():
        assert_within_ulps(getattr(s, name), g[f"{cfg}/{ref_name}"], 1, f"{cfg}/{ref_name}")
    assert torch.equal(g[f"{cfg}/timestep_map"], torch.arange(params["steps"]))  # integers


# --- machine independence: the exactness claim checked on the machine at hand ------------------------


def _mp_schedule(params: dict, digits: int = 80) -> dict[str, np.ndarray]:
    """The schedule's float64 arrays, float32 noise std and input std, evaluated independently with
    mpmath: the official operation order, each transcendental correctly rounded."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
    mp.dps = digits
    kappa, T = float(params.get("kappa", 2.0)), params["steps"]
    start = min(params["min_noise_level"] / kappa, params["min_noise_level"])
    growth = float(mp.exp(mp.mpf(1.0 / (T - 1)) * mp.log(mp.mpf(0.99 / start))))
    pw = lambda x, y: 0.0 if x == 0 else float(mp.power(mp.mpf(x), mp.mpf(y)))  # noqa: E731
    expo = np.array([pw(float(v), 0.3) for v in np.linspace(0.0, 1.0, T)]) * (T - 1)
    sqrt_etas = np.array([pw(growth, float(e)) for e in expo]) * start
    etas = sqrt_etas**2
    prev = np.append(0.0, etas[:-1])
    post_var = kappa**2 * prev / etas * (etas - prev)
    clipped = np.append(post_var[1], post_var[1:])
    logvar = np.array([float(mp.log(mp.mpf(v))) for v in clipped])

    def nearest_f32(x) -> np.float32:
        f = np.float32(float(x))
        cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
        return min(cands, key=lambda c: abs(mp.mpf(float(c)) - x))

    noise_std = np.array([nearest_f32(mp.exp(mp.mpf(0.5 * float(v)))) for v in logvar.astype(np.float32)])
    etas32 = etas.astype(np.float32)
    input_std = np.array([nearest_f32(mp.sqrt(mp.mpf(float(np.float32(e * np.float32(kappa**2) + 1)))))
                          for e in etas32])
    return {"sqrt_etas": sqrt_etas, "posterior_log_variance_clipped": logvar,
            "noise_std_f32": noise_std, "input_std_f32": input_std}


@pytest.mark.parametrize("params", [V1, V3, dict(V3, kappa=1.0, min_noise_level=0.04, steps=15)])
def test_schedule_is_the_same_on_every_machine(params):
    # Every transcendental of the schedule is rounded once from exact arithmetic, so the arrays are the
    # correctly rounded results of the official operation order, bit for bit, on any CPU. mpmath at
    # 80 digits is an independent evaluation of the same thing.
    s = ResShiftSchedule.from_config(**params)
    for name, expected in _mp_schedule(params).items():
        got = getattr(s, name)
        got = got.numpy() if isinstance(got, torch.Tensor) else got
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name


def test_schedule_config_fields_and_derived_arrays():
    a = ResShiftSchedule(steps=4)
    assert a == ResShiftSchedule.from_config(steps=4) and hash(a) == hash(ResShiftSchedule.from_config(steps=4))
    assert a != ResShiftSchedule(steps=4, kappa=1.0)
    assert a.sqrt_etas.shape == (4,) and a.noise_std_f32.dtype == torch.float32
    with pytest.raises(TypeError):
        ResShiftSchedule(steps=4, sqrt_etas=np.zeros(4))  # derived, not settable
