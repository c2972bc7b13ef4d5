import torch

from dass_edge.predictor.model import DaSSPredictor, adapt, predict


def _data(n=5, b=3, c=4, g=4, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, b, c, g, g, generator=gen), torch.randn(n, d, generator=gen),
            torch.randn(n, b, c, g, g, generator=gen), torch.rand(n, generator=gen))


def test_forward_shapes_including_batch_of_one():
    torch.manual_seed(0)
    model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8)
    s, a, t, _ = _data(n=1)
    assert model(s, a, t).shape == (1,)
    s, a, t, _ = _data(n=7)
    assert model(s, a, t).shape == (7,)


def test_two_inner_steps_match_manual_meta_sgd():
    torch.manual_seed(0)
    model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8)
    with torch.no_grad():
        for p in model.alpha.values():
            p.uniform_(0.01, 0.2)
    s, a, t, y = _data()
    adapted = adapt(model, (s, a, t, y), steps=2)

    # Manual: each step's gradient taken at the weights after the previous step.
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in model.base_params().items()}
    for _ in range(2):
        loss = torch.mean((predict(model, theta, s, a, t) - y) ** 2)
        grads = torch.autograd.grad(loss, list(theta.values()))
        theta = {n: (p - model.alpha[n.replace(".", "__")].detach() * g).detach().requires_grad_(True)
                 for (n, p), g in zip(theta.items(), grads)}
    for n in theta:
        assert torch.allclose(adapted[n], theta[n], atol=1e-6), n
    # And the second step really differs from re-using the first-step gradient (the reference bug).
    one = adapt(model, (s, a, t, y), steps=1)
    assert any(not torch.allclose(adapted[n], one[n]) for n in one)


def test_adaptation_reduces_support_loss_and_alpha_gets_meta_gradients():
    torch.manual_seed(0)
    model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8, init_alpha=0.05)
    s, a, t, y = _data()
    before = torch.mean((model(s, a, t) - y) ** 2)
    params = adapt(model, (s, a, t, y), steps=3, create_graph=True)
    after = torch.mean((predict(model, params, s, a, t) - y) ** 2)
    assert after < before
    after.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.alpha.values())


def test_ablation_inputs():
    s, a, t, _ = _data()
    for use in (("arch",), ("student", "teacher"), ("student", "arch")):
        model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8, use=use)
        assert model(s, a, t).shape == (5,)
    assert not hasattr(DaSSPredictor(4, 6, 8, use=("arch",)), "student_enc")


def test_head_only_adaptation_moves_only_the_head_and_fits_the_support():
    torch.manual_seed(0)
    model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8, init_alpha=0.5)
    model.config["adapt_scope"] = "head"
    s, a, t, y = _data(n=3)
    base = model.base_params()
    params = adapt(model, (s, a, t, y), steps=3)
    moved = {n for n in base if not torch.equal(base[n], params[n])}
    assert moved and all(n.startswith("head.") for n in moved)
    with torch.no_grad():
        before = torch.mean((predict(model, base, s, a, t) - y) ** 2)
        after = torch.mean((predict(model, params, s, a, t) - y) ** 2)
    assert after < before
