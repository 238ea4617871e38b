"""Models: parameter counts, shapes, data mismatches, flat-row layout and keyed init."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.func import functional_call

from heal_mpi.learning.models import ParamLayout, build_model, describe_model, init_row, param_count

SHAPES = {"logreg": (20,), "mlp": (20,), "lenet5": (1, 28, 28), "cnn": (3, 32, 32)}


def model_cfg(name, hidden=16):
    return SimpleNamespace(name=name, hidden=hidden)


def test_lenet5_has_the_classic_parameter_count():
    assert param_count(build_model(model_cfg("lenet5"), (1, 28, 28), 10)) == 61_706


def test_small_models_parameter_counts():
    assert param_count(build_model(model_cfg("logreg"), (20,), 4)) == 20 * 4 + 4
    assert param_count(build_model(model_cfg("mlp", 16), (20,), 4)) == 20 * 16 + 16 + 16 * 4 + 4
    assert 100_000 < param_count(build_model(model_cfg("cnn"), (3, 32, 32), 10)) < 300_000


@pytest.mark.parametrize("name", list(SHAPES))
def test_forward_shapes_and_no_buffers(name):
    model = build_model(model_cfg(name), SHAPES[name], 10)
    out = model(torch.randn(5, *SHAPES[name]))
    assert out.shape == (5, 10)
    assert list(model.buffers()) == []  # a row is the whole model
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_lenet5_on_cifar_shaped_images():
    assert build_model(model_cfg("lenet5"), (3, 32, 32), 10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, shape", [("lenet5", (20,)), ("cnn", (20,)), ("cnn", (1, 28, 28)),
                                         ("resnet", (20,))])
def test_model_data_mismatch_names_model_name(name, shape):
    with pytest.raises(ValueError, match="model.name"):
        build_model(model_cfg(name), shape, 10)


@pytest.mark.parametrize("name", list(SHAPES))
def test_row_views_drive_functional_call(name):
    model = build_model(model_cfg(name), SHAPES[name], 10)
    layout = ParamLayout.of(model)
    row = init_row(model, torch.Generator().manual_seed(0))
    assert row.shape == (param_count(model),) and layout.n_params == row.numel()
    torch.nn.utils.vector_to_parameters(row, model.parameters())  # same order as the layout
    x = torch.randn(3, *SHAPES[name])
    torch.testing.assert_close(functional_call(model, layout.views(row), (x,)), model(x))
    stacked = torch.stack([row, row + 1])
    assert layout.views(stacked)[layout.names[0]].shape == (2, *layout.shapes[0])


def test_init_row_is_keyed_and_follows_pytorch_bounds():
    model = build_model(model_cfg("cnn"), (3, 32, 32), 10)
    a = init_row(model, torch.Generator().manual_seed(1))
    b = init_row(model, torch.Generator().manual_seed(1))
    c = init_row(model, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    views = ParamLayout.of(model).views(a)
    w = views["net.0.weight"]                                     # conv 3->32, 3x3: fan_in 27
    assert w.abs().max() <= 27 ** -0.5 and w.abs().max() > 0.9 * 27 ** -0.5
    assert torch.equal(views["net.1.weight"], torch.ones(32))     # GroupNorm
    assert torch.equal(views["net.1.bias"], torch.zeros(32))


def test_describe_model_prints_the_count():
    assert "61,706 parameters" in describe_model("lenet5")
    assert "CIFAR-10" in describe_model("cnn")
    with pytest.raises(ValueError, match="model.name"):
        describe_model("vgg")
