"""Solvers for :class:`~sparsesel.problems.bag_design.BagDesign`: the risk formula and a simulation."""

from __future__ import annotations

import math

from sparsesel.problems.bag_design import BagDesign
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int


@register_solver("formula", kinds=(BagDesign,), description="bag size from the proportional-regime risk formula (exhaustive over candidates)")
def formula(problem: BagDesign) -> Result:
    """Score every candidate bag size with the risk formula and apply the problem's rule.

    Returns ``status="optimal"`` (exact for the formula's objective over the
    candidates) or ``"infeasible"`` when no candidate meets ``risk_target``.
    ``info``: ``risks`` and ``rhos`` per bag size, ``rho`` and ``bias2``/``variance``/
    ``privacy_noise`` at the choice.
    """
    predictions = {k: problem.predict(k) for k in problem.bag_sizes}
    risks = {k: p.excess_risk for k, p in predictions.items()}
    trace = tuple({"bag_size": k, "risk": p.excess_risk, "rho": p.rho} for k, p in predictions.items())
    info = {"risks": risks, "rhos": {k: p.rho for k, p in predictions.items()}}
    chosen = problem.choose(risks)
    if chosen is None:
        return problem.result((), status="infeasible", trace=trace, message="no bag size meets risk_target", **info)
    best = predictions[chosen]
    info.update(rho=best.rho, bias2=best.bias2, variance=best.variance, privacy_noise=best.privacy_noise)
    # without a risk target the choice minimises the objective over the candidates: proven optimal
    bounds = {} if problem.risk_target is not None else {"lower_bound": best.excess_risk, "upper_bound": best.excess_risk}
    return problem.result((chosen,), status="optimal", objective=best.excess_risk, trace=trace, **bounds, **info)


@register_solver(
    "simulation",
    kinds=(BagDesign,),
    description="bag size from Monte Carlo on Gaussian designs of the problem's size (checks the formula)",
)
def simulation(problem: BagDesign, *, n_reps: int = 10, seed: int = 0) -> Result:
    """Simulate every candidate: Gaussian ``X``, random bags, the DP release, the estimator.

    The interpolating estimator uses the formula's optimal mixing weight at each
    bag size. The empirical rule (minimum mean risk, or the largest bag with mean
    risk ``<= risk_target``) picks the bag size; ``objective`` is the problem's
    (formula) objective there, the simulated risks are in ``info["simulated"]``
    as ``{k: (mean, standard_error)}``.
    """
    from sparsesel.aggregate.risk import simulate_risk

    n_reps = check_int(n_reps, "n_reps", low=2)
    seed = check_int(seed, "seed", low=0)
    simulated, trace = {}, []
    for k in problem.bag_sizes:
        if problem.estimator == "bag" and problem.ridge == 0 and problem.n_samples // k <= problem.n_features + 1:
            simulated[k] = (math.inf, math.nan)
            trace.append({"bag_size": k, "mean": math.inf, "se": math.nan, "rho": 0.0})
            continue
        rho = {"bag": 0.0, "instance": 1.0}.get(problem.estimator)
        if rho is None:
            rho = problem.predict(k).rho
        mean, se, _ = simulate_risk(
            problem.n_samples, problem.n_features, k, problem.signal, problem.noise, rho=rho, ridge=problem.ridge,
            epsilon=problem.epsilon, clip=problem.clip, delta=problem.delta, mechanism=problem.mechanism,
            n_reps=n_reps, seed=seed + 7919 * k,
        )
        simulated[k] = (mean, se)
        trace.append({"bag_size": k, "mean": mean, "se": se, "rho": rho})
    chosen = problem.choose({k: v[0] for k, v in simulated.items()})
    info = {"simulated": simulated, "n_reps": n_reps}
    if chosen is None:
        return problem.result((), status="infeasible", trace=trace, message="no bag size meets risk_target", **info)
    return problem.result((chosen,), status="feasible", trace=trace, **info)
