import pytest
import torch
import torch.nn.functional as F

from partial_csl.layers.abn import ABN, inplace_abn_available, make_abn


def reference_abn(x, weight, bias, mean, var, training, momentum, eps, slope):
    """BatchNorm with scale |w| + eps, then leaky ReLU, written out by hand."""
    if training:
        dims = (0, 2, 3)
        batch_mean = x.mean(dims)
        batch_var = x.var(dims, unbiased=False)
        n = x.numel() / x.shape[1]
        new_mean = (1 - momentum) * mean + momentum * batch_mean
        new_var = (1 - momentum) * var + momentum * batch_var * n / (n - 1)
        use_mean, use_var = batch_mean, batch_var
    else:
        new_mean, new_var, use_mean, use_var = mean, var, mean, var
    shape = (1, -1, 1, 1)
    y = (x - use_mean.view(shape)) / torch.sqrt(use_var.view(shape) + eps)
    y = y * (weight.abs() + eps).view(shape) + bias.view(shape)
    return F.leaky_relu(y, slope), new_mean, new_var


@pytest.mark.parametrize("training", [True, False])
def test_torch_backend_matches_hand_written_reference_in_float64(training):
    torch.manual_seed(0)
    layer = ABN(5, activation="leaky_relu", activation_param=0.01).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.7, 0.0, 2.0, -3.0]))
        layer.bias.normal_()
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
    layer.train(training)
    weight = layer.weight.detach().clone().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()
    mean0, var0 = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()

    out = layer(x)
    ref, new_mean, new_var = reference_abn(x_ref, weight, bias, mean0, var0, training, 0.1, 1e-5, 0.01)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_mean, new_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_var, new_var, rtol=1e-12, atol=1e-12)

    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.weight.grad, weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, bias.grad, rtol=1e-10, atol=1e-12)


def test_identity_activation_and_bad_arguments():
    layer = ABN(3, activation="identity").eval()
    x = -torch.ones(1, 3, 2, 2)
    assert torch.all(layer(x) < 0)
    with pytest.raises(ValueError, match="unknown activation"):
        ABN(3, activation="elu")
    with pytest.raises(ValueError, match="unknown norm backend"):
        make_abn(3, "cudnn", "identity", 0.0)


needs_inplace_abn = pytest.mark.skipif(not inplace_abn_available(),
                                       reason="inplace_abn is not installed (make inplace-abn builds it)")


@needs_inplace_abn
@pytest.mark.parametrize("activation,slope", [("leaky_relu", 0.01), ("leaky_relu", 0.001), ("identity", 0.0)])
def test_inplace_abn_matches_torch_backend(activation, slope):
    torch.manual_seed(0)
    ours = make_abn(6, "torch", activation, slope)
    theirs = make_abn(6, "inplace_abn", activation, slope)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 6, 5, 5)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2 * 1.0)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x.clone()), rtol=1e-4, atol=1e-5)
