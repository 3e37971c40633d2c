"""Tests of kr_lib.simulation (book section 3, sec-df): the networks compute what the tensor-regression form
says, df is the dimension of what they reach, the estimators recover W*, and a small seeded experiment
shows the ordering the theory predicts (compressed students' error flat in K, dense students' growing)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from kr_lib.complexity import jacobian_dof
from kr_lib.formulation import TensorRegression
from kr_lib.simulation import (
    CNNGeometry, SimulationConfig, build_cnn, cp_als, degrees_of_freedom, loglog_slopes, n_to_reach,
    fit_gradient, network_output, normal_equations, patches, pooling_matrix, reference_constant,
    run_sample_complexity, summarized_tensor, summarize, tucker_als,
)

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small matrices: one thread is fastest, and spares a shared machine's other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


GEOMETRIES = [CNNGeometry((10, 10), 4, 3, 1, 2, out_features=2),
              CNNGeometry((6, 9, 8), 4, (2, 3, 3), (1, 2, 1), (2, 1, 3))]
SMALL = CNNGeometry((8, 8), 3, 2, 2, 2)  # non-overlapping 2x2 patches, pooled 2x2: W has modes (3, 2, 2, 4)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["2d", "3d"])
@pytest.mark.parametrize("family", ["tucker", "cp", "dense"])
def test_network_output_and_summarized_tensor_match_the_module(geometry, family):
    torch.manual_seed(0)
    X = torch.randn(5, geometry.in_channels, *geometry.spatial, dtype=torch.float64)
    S = pooling_matrix(geometry, dtype=torch.float64)
    for activation in ("identity", "relu"):
        model = build_cnn(geometry, family, 5, R_in=2, R=3, activation=activation).double()
        w = dict(model.named_parameters())
        torch.testing.assert_close(network_output(family, activation, w, geometry, patches(X, geometry), S), model(X))
    # identity: W from the weights equals the formulation module's W (folded independently), and so does Z
    linear = build_cnn(geometry, family, 5, R_in=2, R=3).double()
    linear.load_state_dict(model.state_dict())
    reg = TensorRegression.from_cnn(linear, (geometry.in_channels, *geometry.spatial))
    W = summarized_tensor(family, w, geometry)
    torch.testing.assert_close(W, reg.weight)
    Z = patches(X, geometry) @ S
    torch.testing.assert_close(Z.reshape(reg.design(X).shape), reg.design(X))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["2d", "3d"])
def test_network_output_reads_the_patches_in_either_memory_layout(geometry):
    """A stack of 3 ReLU networks on patches kept as (b, n, D, M) and on the same patches kept as (b, D, n, M) (the
    transposed view run_sample_complexity passes): the same outputs, each network's equal to its module's."""
    torch.manual_seed(0)
    models = [build_cnn(geometry, "tucker", 5, R_in=2, R=3, activation="relu").double() for _ in range(3)]
    stacked = {k: torch.stack([dict(m.named_parameters())[k] for m in models]) for k in dict(models[0].named_parameters())}
    X = torch.randn(3, 7, geometry.in_channels, *geometry.spatial, dtype=torch.float64)
    S = pooling_matrix(geometry, dtype=torch.float64)
    P = torch.stack([patches(x, geometry) for x in X])  # (3, 7, D, M)
    transposed = P.transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous() and torch.equal(transposed, P)
    out = network_output("tucker", "relu", stacked, geometry, P, S)
    torch.testing.assert_close(network_output("tucker", "relu", stacked, geometry, transposed, S), out)
    for i, model in enumerate(models):
        torch.testing.assert_close(out[i], model(X[i]))


def test_fit_gradient_draws_minibatches_along_the_sample_dimension():
    """The same students trained on patches with the samples on dimension 1 and on dimension 2 (``sample_dim``):
    the same minibatches, so the same weights and best epochs."""
    g = SMALL
    torch.manual_seed(0)
    models = [build_cnn(g, "dense", 4, activation="relu") for _ in range(2)]
    start = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in dict(models[0].named_parameters())}
    S = pooling_matrix(g)
    P = torch.stack([patches(torch.randn(40, g.in_channels, *g.spatial), g) for _ in range(2)])  # (2, 40, D, M)
    y = torch.randn(2, 40)
    fits = []
    for dim, inputs, view in ((1, P, lambda x: x), (2, P.transpose(1, 2).contiguous(), lambda x: x.transpose(1, 2))):
        def predict(p, x, view=view):
            return network_output("dense", "relu", p, g, view(x), S).squeeze(-1)
        train, val = (inputs.narrow(dim, 0, 30), y[:, :30]), (inputs.narrow(dim, 30, 10), y[:, 30:])
        fits.append(fit_gradient(predict, {k: v.clone() for k, v in start.items()}, train, val, batch_size=8,
                                 max_epochs=5, min_steps=1, generator=torch.Generator().manual_seed(1), sample_dim=dim))
    (w1, e1), (w2, e2) = fits
    assert torch.equal(e1, e2)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k])
    assert not torch.equal(w1["head.weight"], start["head.weight"])  # it trained


def test_stacked_weights_keep_their_leading_dimension():
    models = [build_cnn(SMALL, "tucker", 4, R_in=2, R=2).double() for _ in range(3)]
    stacked = {k: torch.stack([dict(m.named_parameters())[k] for m in models]) for k in dict(models[0].named_parameters())}
    W = summarized_tensor("tucker", stacked, SMALL)
    assert W.shape == (3, 1, *SMALL.summarized_shape)
    torch.testing.assert_close(W[1], summarized_tensor("tucker", dict(models[1].named_parameters()), SMALL))


@pytest.mark.parametrize("family,R_in,R", [("tucker", 2, 2), ("dense", None, None), ("cp", None, 2)])
def test_df_is_the_rank_of_the_jacobian_of_weights_to_W(family, R_in, R):
    """df (complexity's formulas) = the dimension of the set of W the students reach, measured."""
    counted = []
    for K in (1, 2, 4, 8):
        if family == "cp" and K < R:
            continue
        model = build_cnn(SMALL, family, K, R_in=R_in, R=R).double()
        names = [k for k, _ in model.named_parameters()]
        weights = [torch.randn_like(p) for _, p in model.named_parameters()]
        measured = jacobian_dof(lambda *ws: summarized_tensor(family, dict(zip(names, ws)), SMALL), *weights)
        assert measured == degrees_of_freedom(SMALL, family, K, R_in, R)
        counted.append(measured)
    if family == "dense":
        assert counted == sorted(counted) and counted[-1] > counted[0]  # grows with K
    else:
        assert len(set(counted[-2:])) == 1  # no K in it once K >= R


def test_tucker_als_recovers_a_low_rank_W_without_noise():
    g = torch.Generator().manual_seed(0)
    P, L, T = 4, 3, 6
    U, G, V = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((P, 2), (2, L, 2), (T, 2)))
    W = torch.einsum("sLq,cs,tq->cLt", G, U, V)
    Z = torch.randn(1, 60, P * L * T, generator=g, dtype=torch.float64)  # df = 32 < n = 60 < 72 = dim W
    W_hat = tucker_als(*normal_equations(Z, Z @ W.reshape(-1)), (P, L, T), (2, 2), iters=200, tol=1e-12)
    torch.testing.assert_close(W_hat[0], W, atol=1e-6, rtol=1e-6)


def test_cp_als_recovers_a_rank_two_W_without_noise():
    g = torch.Generator().manual_seed(0)
    dims = (4, 3, 3, 5)
    factors = [torch.randn(d, 2, generator=g, dtype=torch.float64) for d in dims]
    W = torch.einsum("ar,br,cr,dr->abcd", *factors)
    Z = torch.randn(1, 200, math.prod(dims), generator=g, dtype=torch.float64)
    W_hat = cp_als(*normal_equations(Z, Z @ W.reshape(-1)), dims, 2, iters=300, tol=1e-12)
    torch.testing.assert_close(W_hat[0], W, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def linear_als_results():
    config = SimulationConfig(spatial=(16, 16), in_channels=3, kernel_size=2, stride=2, pool=2, R_in=2, R=2,
                              K_grid=(2, 4, 8, 16), n_grid=(800, 1600, 3200), reps=4, sigma=0.5,
                              estimator="als", n_test=500, seed=0, device="cpu")
    return config, run_sample_complexity(config, progress=False)


def test_results_are_a_tidy_frame(linear_als_results):
    config, results = linear_als_results
    for column in ("student", "K", "R", "n", "rep", "activation", "estimator", "df", "naive",
                   "estimation_error", "excess_risk"):
        assert column in results.columns
    assert len(results) == 2 * 4 * 3 * config.reps
    assert results.estimation_error.notna().all() and (results.excess_risk > 0).all()
    compressed = results[results.student == "compressed"]
    assert compressed.df.nunique() == 1
    assert compressed.groupby("K").naive.first().is_monotonic_increasing  # the naive count grows with K


def test_linear_ordering_follows_df_not_the_naive_count(linear_als_results):
    """At fixed R the compressed students' errors do not depend on K; the dense students' grow with K;
    the log-log slope is near -1/2 where n >> df."""
    _, results = linear_als_results
    s = summarize(results).set_index(["student", "K", "n"])["mean"]
    n_max = 3200
    compressed = [s["compressed", K, n_max] for K in (2, 4, 8, 16)]
    dense = [s["dense", K, n_max] for K in (2, 4, 8, 16)]
    assert max(compressed) / min(compressed) < 1.05
    assert all(a < b for a, b in zip(dense, dense[1:]))
    assert compressed[-1] < dense[-1] / 1.5  # K = 8R: same K, far smaller error
    slopes = loglog_slopes(results, min_n_over_df=8).dropna(subset=["slope"])
    assert len(slopes) == 8 and slopes.slope.between(-0.7, -0.4).all(), slopes


def test_gradient_students_coincide_in_K_and_match_least_squares():
    """Gradient training of students with K = R and K = 4R (different parametrizations of the same set of W)
    at n >> df: their errors agree with each other and with the rank-constrained least-squares estimator."""
    common = dict(spatial=(16, 16), in_channels=3, kernel_size=2, stride=2, pool=2, R_in=2, R=2, K_grid=(2, 8),
                  n_grid=(800,), reps=2, students=("compressed",), n_test=500, seed=0, device="cpu")
    gradient = SimulationConfig(**common, estimator="gradient", batch_size=128, lr=1e-2, max_epochs=100)
    s = summarize(run_sample_complexity(gradient, progress=False)).set_index("K")["mean"]
    als = summarize(run_sample_complexity(SimulationConfig(**common, estimator="als"), progress=False))["mean"].iloc[0]
    assert 0.8 < s[2] / s[8] < 1.25
    assert max(s) < 1.5 * als  # the validation split costs a little; a stuck optimizer would cost far more


def test_relu_runs_report_excess_risk_only():
    config = SimulationConfig(spatial=(8, 8), in_channels=2, kernel_size=2, stride=2, pool=2, R_in=1, R=2,
                              K_grid=(2,), n_grid=(40,), reps=2, activation="relu", n_test=50, max_epochs=3,
                              device="cpu")
    assert config.resolved_estimator == "gradient"
    results = run_sample_complexity(config, progress=False)
    assert results.estimation_error.isna().all()
    assert np.isfinite(results.excess_risk).all() and (results.activation == "relu").all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(R_in=5), "R_in"),
    (dict(R=17), "R=17 exceeds prod"),
    (dict(K_grid=(0, 2)), "K_grid"),
    (dict(estimator="gradient", n_grid=(10, 100), validation=10), "n=10 is not larger than its 10 validation"),
    (dict(activation="tanh"), "unknown activation 'tanh'"),
    (dict(estimator="newton"), "unknown estimator 'newton'"),
    (dict(activation="relu", estimator="als"), "needs activation 'identity'"),
    (dict(stride=1, spatial=(10, 10)), "not identifiable"),
    (dict(family="cp", K_grid=(1, 4)), "K >= R"),
    (dict(students=("wide",)), "unknown student"),
    (dict(device="cuda:7" if not torch.cuda.is_available() else "nonsense"), "device|Expected one of"),
])
def test_bad_input_is_refused_before_any_work(kwargs, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        SimulationConfig(**kwargs)


def test_analysis_on_an_exact_power_law():
    rows = [dict(student=s, K=K, df=df, naive=10 * df, K_over_R=1.0, n=n, rep=r, sigma=0.5,
                 estimation_error=3 * 0.5 * math.sqrt(df / n))
            for s, K, df in (("compressed", 2, 50), ("dense", 8, 200)) for n in (100, 400, 1600, 6400) for r in range(2)]
    results = pd.DataFrame(rows)
    slopes = loglog_slopes(results, min_n_over_df=1)
    np.testing.assert_allclose(slopes.slope, -0.5)
    assert reference_constant(results, min_n_over_df=1) == pytest.approx(3.0)
    target = 3 * 0.5 * math.sqrt(50 / 800)  # compressed: exactly at n = 800 (between grid points)
    table = n_to_reach(results, target).set_index("student")
    assert table.loc["compressed", "n_needed"] == pytest.approx(800)
    assert table.loc["dense", "n_needed"] == pytest.approx(3200)
    assert n_to_reach(results, 1e-6).reached.eq("not reached").all()


def test_cp_teacher_on_video_inputs_runs_end_to_end():
    config = SimulationConfig(spatial=(4, 8, 8), in_channels=2, kernel_size=2, stride=2, pool=(1, 2, 2), family="cp",
                              R_in=None, R=2, K_grid=(2, 4), n_grid=(150,), reps=2, n_test=100, device="cpu")
    results = run_sample_complexity(config, progress=False)
    assert set(results.family) == {"cp", "dense"} and len(results) == 2 * 2 * 2
    compressed = results[results.student == "compressed"]
    assert compressed.df.nunique() == 1 and np.isfinite(results.estimation_error).all()


def test_no_power_law_is_fitted_through_a_curve_that_does_not_fall():
    rows = [dict(student="dense", K=K, df=10, naive=100, K_over_R=1.0, n=n, rep=r, sigma=0.5,
                 root_excess_risk=err + 0.01 * r)
            for K, errs in ((2, (0.4, 0.3, 0.2)), (4, (0.4, 0.45, 0.2)))
            for n, err in zip((100, 200, 400), errs) for r in range(2)]
    slopes = loglog_slopes(pd.DataFrame(rows), "root_excess_risk", min_n_over_df=1).set_index("K")
    assert slopes.loc[2, "slope"] < 0 and slopes.loc[2, "note"] == ""
    assert math.isnan(slopes.loc[4, "slope"]) and "does not fall" in slopes.loc[4, "note"]
    kept = loglog_slopes(pd.DataFrame(rows), "root_excess_risk", min_n_over_df=1, require_decreasing=False)
    assert kept.slope.notna().all()


def test_k_ordering_says_whether_the_error_follows_df():
    from kr_lib.simulation import describe_k_ordering, k_ordering

    rows = [dict(student="dense", K=K, df=10 * K, naive=100 * K, K_over_R=1.0, n=n, rep=r, sigma=0.5,
                 root_excess_risk=base / K + 0.001 * r)
            for n, base in ((100, 1.0), (400, 0.5)) for K in (2, 4, 8) for r in range(3)]
    order = k_ordering(pd.DataFrame(rows), "root_excess_risk")
    assert order.order.tolist() == ["decreasing", "decreasing"] and order.separated.all()
    text = describe_k_ordering(order)
    assert "2 of 2 sample sizes fall as K grows, against the df ordering (2 beyond" in text
    with pytest.raises(ValueError, match="no 'compressed' students"):
        k_ordering(pd.DataFrame(rows), "root_excess_risk", student="compressed")
