"""Finding the weights in official checkpoint wrappings and checking keys and shapes."""

from __future__ import annotations

import pytest
import torch

from irctl.io.state_dict import StateDictError, compare_keys, unwrap_state_dict

W = {"conv.weight": torch.ones(2, 3), "conv.bias": torch.zeros(2)}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_official_wrapping_unwraps_to_the_same_weights() -> None:
    ema = {k: v + 1 for k, v in W.items()}
    assert _equal(unwrap_state_dict(W), W)  # IR-SDE / Refusion: a plain state_dict
    basicsr = {"params": W, "params_ema": ema}
    assert _equal(unwrap_state_dict(basicsr), ema)  # the EMA, as the authors test
    assert _equal(unwrap_state_dict(basicsr, key="params"), W)
    lightning = {"epoch": 3, "state_dict": W, "hyper_parameters": object()}
    assert _equal(unwrap_state_dict(lightning), W)
    ddp = {f"module.{k}": v for k, v in W.items()}
    assert _equal(unwrap_state_dict(ddp), W)
    assert _equal(unwrap_state_dict({"params_ema": ddp}), W)


def test_what_is_not_a_state_dict_is_a_one_line_error() -> None:
    with pytest.raises(StateDictError, match="holds: epoch, optimizer"):
        unwrap_state_dict({"epoch": 1, "optimizer": {}})
    with pytest.raises(StateDictError, match="no 'params_ema'"):
        unwrap_state_dict({"params": W}, key="params_ema")
    with pytest.raises(StateDictError, match="no tensors"):
        unwrap_state_dict({"state_dict": {"a": 1}})


def test_key_report_names_the_first_mismatches() -> None:
    given = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "x": torch.zeros(1)}
    expected = {"a": (2, 3), "b": (5,), "c": (1,)}
    report = compare_keys(given, expected)
    assert not report.ok
    assert report.missing == ["c"] and report.unexpected == ["x"]
    assert report.misshaped == [("b", (4,), (5,))]
    message = report.message()
    assert "1 missing (c)" in message and "1 unexpected (x)" in message
    assert "b is (4,), expected (5,)" in message and "\n" not in message
    assert compare_keys(given, {k: tuple(v.shape) for k, v in given.items()}).ok
    many = compare_keys({}, {f"k{i}": (1,) for i in range(10)})
    assert many.message() == "10 missing (k0, k1, k2 and 7 more)"
