"""course_utils.hpdl.guard: tampering with what the checks rely on is seen and undone;
PyTorch's own rebinding of ``torch.manual_seed`` (when ``torch._dynamo`` is first imported)
is not taken for tampering."""

import functools

import torch

from course_utils.hpdl.guard import Guard


def test_a_replaced_torch_function_is_reported_and_put_back(monkeypatch):
    guard = Guard({})
    original = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    assert "torch.manual_seed was changed" in guard.changes()
    guard.restore()
    assert torch.manual_seed is original


def test_pytorchs_own_wrapper_of_a_function_is_not_tampering(monkeypatch):
    guard = Guard({})
    original = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", torch._disable_dynamo(original))
    assert guard.changes() == []


def test_a_wrapper_written_outside_pytorch_is_tampering(monkeypatch):
    guard = Guard({})
    original = torch.manual_seed

    @functools.wraps(original)
    def quiet(*args, **kwargs):  # looks like PyTorch's wrapper, but is not its code
        return None

    monkeypatch.setattr(torch, "manual_seed", quiet)
    assert "torch.manual_seed was changed" in guard.changes()


def test_a_wrapper_of_something_else_is_still_tampering(monkeypatch):
    guard = Guard({})

    @functools.wraps(torch.randn)
    def fake(*args, **kwargs):
        return None

    monkeypatch.setattr(torch, "manual_seed", fake)
    assert "torch.manual_seed was changed" in guard.changes()
