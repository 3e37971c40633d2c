"""TensorRegression.from_cnn refuses what is not a linear CNN of section 1, naming the culprit."""
import pytest
import torch
from torch import nn

from kr_lib.formulation import TensorRegression


def head(features: int, outputs: int = 2):
    return [nn.Flatten(), nn.Linear(features, outputs)]


@pytest.mark.parametrize("bad,name", [(nn.ReLU(), "ReLU"), (nn.MaxPool2d(2), "MaxPool2d"), (nn.Tanh(), "Tanh"),
                                      (nn.LPPool2d(2, 2), "LPPool2d")])
def test_nonlinear_module_is_a_type_error_naming_path_and_class(bad, name):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Identity(), bad), *head(2 * 3 * 3)).eval()
    with pytest.raises(TypeError, match=rf"'1\.1' \({name}\).*accepted: Conv"):
        TensorRegression.from_cnn(model, (1, 5, 5))


def test_dropout_and_batchnorm_are_refused_in_training_mode_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.3), *head(2 * 3 * 3))
    with pytest.raises(TypeError, match=r"'1' \(BatchNorm2d\) is in training mode.*model\.eval\(\)"):
        TensorRegression.from_cnn(model, (1, 5, 5))
    model[1].eval()
    with pytest.raises(TypeError, match=r"'2' \(Dropout\) is in training mode"):
        TensorRegression.from_cnn(model, (1, 5, 5))
    TensorRegression.from_cnn(model.eval(), (1, 5, 5))


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), *head(18)).eval()
    with pytest.raises(TypeError, match=r"'1' \(BatchNorm2d\).*track_running_stats=False"):
        TensorRegression.from_cnn(model, (1, 5, 5))


def test_overlapping_pooling_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, stride=2), *head(2 * 3 * 3)).eval()
    with pytest.raises(ValueError, match=r"'1' \(AvgPool2d\).*kernel_size=\(3, 3\) and stride=\(2, 2\).*"
                                         r"accepted: stride == kernel_size"):
        TensorRegression.from_cnn(model, (1, 10, 10))


def test_adaptive_pooling_that_does_not_divide_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d((3, 2)), *head(2 * 3 * 2)).eval()
    with pytest.raises(ValueError, match=r"'1' \(AdaptiveAvgPool2d\) maps size \(8, 8\) to \(3, 2\).*"
                                         r"accepted: output sizes that divide"):
        TensorRegression.from_cnn(model, (1, 10, 10))


def test_padded_final_pooling_and_ceil_mode_are_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, padding=1), *head(2 * 5 * 5)).eval()
    with pytest.raises(ValueError, match=r"'1' \(AvgPool2d\) is the final pooling and pads"):
        TensorRegression.from_cnn(model, (1, 10, 10))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, ceil_mode=True), *head(2 * 3 * 3)).eval()
    with pytest.raises(ValueError, match=r"'1' \(AvgPool2d\) has ceil_mode=True"):
        TensorRegression.from_cnn(model, (1, 10, 10))


def test_input_shape_that_does_not_fit_the_first_conv_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), *head(2 * 3 * 3)).eval()
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) expects in_channels=3 but receives 1"):
        TensorRegression.from_cnn(model, (1, 5, 5))
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) is written for 2 spatial mode\(s\).*has 3"):
        TensorRegression.from_cnn(model, (3, 5, 5, 5))
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) receives spatial size \(2, 5\).*smaller than its kernel"):
        TensorRegression.from_cnn(model, (3, 2, 5))
    with pytest.raises(ValueError, match=r"'2' \(Linear\) expects in_features=18 but receives 50.*or an input_shape"):
        TensorRegression.from_cnn(model, (3, 7, 7))


@pytest.mark.parametrize("shape", [(1,), (1, 2, 3, 4, 5), (1, 0, 4), (1, 2.5, 3), "abc", 5])
def test_malformed_input_shape_is_refused(shape):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), *head(18)).eval()
    with pytest.raises(ValueError, match="input_shape must be"):
        TensorRegression.from_cnn(model, shape)


def test_model_structure_errors():
    with pytest.raises(TypeError, match="model must be an nn.Sequential, got Conv2d"):
        TensorRegression.from_cnn(nn.Conv2d(1, 2, 3), (1, 5, 5))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x) * 2

    with pytest.raises(TypeError, match=r"'0' \(Block\) has its own forward\(\)"):
        TensorRegression.from_cnn(nn.Sequential(Block(), *head(18)), (1, 5, 5))
    with pytest.raises(ValueError, match="must end with Flatten and Linear.*no Flatten"):
        TensorRegression.from_cnn(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 5, 5))
    with pytest.raises(ValueError, match="no Linear after Flatten"):
        TensorRegression.from_cnn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), (1, 5, 5))
    with pytest.raises(ValueError, match=r"'1' \(Linear\) comes before Flatten"):
        TensorRegression.from_cnn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(3, 2), *head(18)), (1, 5, 5))
    with pytest.raises(ValueError, match=r"'1' \(Flatten\) has start_dim=2"):
        TensorRegression.from_cnn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(2), nn.Linear(9, 2)), (1, 5, 5))
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) pads with padding_mode='reflect'"):
        TensorRegression.from_cnn(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
                                                *head(50)), (1, 5, 5))
    with pytest.raises(TypeError, match=r"'0' \(ConvTranspose2d\) is a transposed convolution"):
        TensorRegression.from_cnn(nn.Sequential(nn.ConvTranspose2d(1, 2, 3), *head(98)), (1, 5, 5))


def test_design_refuses_inputs_of_the_wrong_shape():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), *head(18)).eval()
    tr = TensorRegression.from_cnn(model, (1, 5, 5))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(n, 1, 5, 5\), got \(2, 1, 6, 5\)"):
        tr.design(torch.zeros(2, 1, 6, 5))
    with pytest.raises(ValueError, match=r"got \(1, 5, 5\)"):
        tr.predict(torch.zeros(1, 5, 5))
