"""SAM and the optimizer table against closed-form steps on a quadratic loss."""

from __future__ import annotations

import pytest
import torch

from sweeper.errors import UnknownNameError
from sweeper.optim.per_trial import make_optimizer
from sweeper.optim.registry import OPTIMIZERS, REGISTRY, get_optimizer
from sweeper.optim.sam import SAM


def _quadratic(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A symmetric positive definite A, a vector b and a starting point w, all float64."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = m @ m.T + n * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    return a, b, w


def _loss(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return 0.5 * w @ a @ w + b @ w


def _sam_step(opt: SAM, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One SAM step written out; returns w after the first step (at w + e)."""
    opt.zero_grad()
    torch.autograd.backward(_loss(a, b, w))
    opt.first_step(zero_grad=True)
    perturbed = w.detach().clone()
    torch.autograd.backward(_loss(a, b, w))
    opt.second_step(zero_grad=True)
    return perturbed


def _sam_reference(
    a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, rho: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """By hand: e = rho g/||g|| with g = A w + b, and the gradient g2 = A (w + e) + b."""
    g = a @ w + b
    e = rho * g / torch.linalg.vector_norm(g)
    g2 = a @ (w + e) + b
    return e, g2


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sam_sgd_step_matches_closed_form(weight_decay: float) -> None:
    a, b, w0 = _quadratic()
    lr, rho = 0.01, 0.05
    w = w0.clone().requires_grad_(True)
    opt = make_optimizer("sgd", [w], lr=lr, weight_decay=weight_decay, momentum=0.0, sam_rho=rho)
    assert isinstance(opt, SAM)

    perturbed = _sam_step(opt, a, b, w)

    e, g2 = _sam_reference(a, b, w0, rho)
    torch.testing.assert_close(perturbed, w0 + e, rtol=0, atol=1e-12)
    expected = w0 - lr * (g2 + weight_decay * w0)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_sam_norm_is_global_over_parameters_and_groups() -> None:
    # Split w into two parameters in two groups: e must use one norm over both gradients.
    a, b, w0 = _quadratic()
    lr, rho = 0.02, 0.1
    w1 = w0[:2].clone().requires_grad_(True)
    w2 = w0[2:].clone().requires_grad_(True)
    opt = SAM([{"params": [w1]}, {"params": [w2]}], torch.optim.SGD, rho=rho, lr=lr)

    opt.zero_grad()
    torch.autograd.backward(_loss(a, b, torch.cat([w1, w2])))
    opt.first_step(zero_grad=True)
    torch.autograd.backward(_loss(a, b, torch.cat([w1, w2])))
    opt.second_step(zero_grad=True)

    _, g2 = _sam_reference(a, b, w0, rho)
    torch.testing.assert_close(torch.cat([w1, w2]).detach(), w0 - lr * g2, rtol=0, atol=1e-12)


def test_sam_adam_step_matches_hand_written_adam() -> None:
    a, b, w0 = _quadratic(seed=1)
    lr, rho, wd = 1e-3, 0.02, 0.01
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    w = w0.clone().requires_grad_(True)
    opt = make_optimizer("adam", [w], lr=lr, weight_decay=wd, momentum=0.0, sam_rho=rho)
    assert isinstance(opt, SAM)
    assert isinstance(opt.base_optimizer, torch.optim.Adam)

    _sam_step(opt, a, b, w)

    # One Adam step (coupled L2: the decay joins the gradient) on the gradient taken at w + e.
    _, g2 = _sam_reference(a, b, w0, rho)
    grad = g2 + wd * w0
    m_hat = (1 - beta1) * grad / (1 - beta1)
    v_hat = (1 - beta2) * grad**2 / (1 - beta2)
    expected = w0 - lr * m_hat / (v_hat.sqrt() + eps)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_sam_step_with_closure_matches_explicit_passes() -> None:
    a, b, w0 = _quadratic(seed=2)
    w_explicit = w0.clone().requires_grad_(True)
    w_closure = w0.clone().requires_grad_(True)
    explicit = SAM([w_explicit], torch.optim.SGD, rho=0.05, lr=0.01)
    closure_opt = SAM([w_closure], torch.optim.SGD, rho=0.05, lr=0.01)

    _sam_step(explicit, a, b, w_explicit)

    def closure() -> float:
        loss = _loss(a, b, w_closure)
        torch.autograd.backward(loss)
        return float(loss.detach())

    torch.autograd.backward(_loss(a, b, w_closure))
    closure_opt.step(closure)

    assert torch.equal(w_closure.detach(), w_explicit.detach())


def test_plain_optimizers_from_the_table() -> None:
    w = torch.zeros(3, requires_grad=True)
    sgd = make_optimizer("sgd", [w], lr=0.1, weight_decay=0.01, momentum=0.9)
    assert type(sgd) is torch.optim.SGD
    assert sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["weight_decay"] == 0.01

    adam = make_optimizer("adam", [w], lr=0.1, weight_decay=0.01, momentum=0.0)
    assert type(adam) is torch.optim.Adam  # coupled L2, not AdamW
    assert adam.param_groups[0]["fused"] is True


def test_unknown_optimizer_lists_the_valid_names() -> None:
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(UnknownNameError) as info:
        make_optimizer("rmsprop", [w], lr=0.1, weight_decay=0.0, momentum=0.0)
    assert str(info.value) == "unknown optimizer 'rmsprop'; choose one of: adam, sgd"


def test_registry_lookup_lists_the_valid_names() -> None:
    assert get_optimizer("adam") is REGISTRY["adam"]
    assert OPTIMIZERS == ("adam", "sgd")
    with pytest.raises(UnknownNameError) as info:
        get_optimizer("adamw")
    assert str(info.value) == "unknown optimizer 'adamw'; choose one of: adam, sgd"


def test_parameter_models_take_their_optimizer_names_from_the_registry() -> None:
    from pydantic import ValidationError

    from sweeper.tasks.obesity.params import ObesityParams

    for name in REGISTRY:
        assert ObesityParams(optimizer=name).optimizer == name
    with pytest.raises(ValidationError, match="Input should be 'sgd' or 'adam'"):
        ObesityParams(optimizer="adamw")


def test_adam_rejects_momentum() -> None:
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="momentum applies to sgd only"):
        make_optimizer("adam", [w], lr=0.1, weight_decay=0.0, momentum=0.9)


def test_negative_rho_is_rejected() -> None:
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="rho must be >= 0"):
        SAM([w], torch.optim.SGD, rho=-0.1, lr=0.1)
