"""Bad model inputs: wrong rank, channels, dtype or size is an InputError; NaN stays in its row."""

import pytest
import torch
from conftest import TINY

from resnet_zoo import (
    InputError,
    create,
)

pytestmark = pytest.mark.usefixtures("tiny_arch")  # the tiny architecture is registered for these tests


def test_input_checks():
    m = create(TINY).eval()
    for x, match in [
        (torch.randn(3, 16, 16), "4-d"),
        (torch.randn(1, 3, 16, 16, 1), "4-d"),
        (torch.randn(1, 2, 16, 16), "input channels"),
        (torch.ones(1, 3, 16, 16, dtype=torch.int64), "floating-point"),
        (torch.randn(1, 3, 0, 16), "empty spatial"),
        ([[1.0]], "torch.Tensor"),
    ]:
        with pytest.raises(InputError, match=match):
            m(x)
    assert m(torch.randn(0, 3, 16, 16)).shape == (0, 3)
    assert [t.shape[0] for t in m.forward_intermediates(torch.randn(0, 3, 16, 16), intermediates_only=True)] == [
        0,
        0,
        0,
    ]


def test_nan_input_stays_in_its_own_row():
    m = create(TINY).eval()
    x = torch.randn(3, 3, 16, 16)
    x[1, 0, 4, 4] = float("nan")
    with torch.no_grad():
        out = m(x)
        clean = m(x[[0, 2]])
    assert torch.isnan(out[1]).all()
    torch.testing.assert_close(out[[0, 2]], clean)
