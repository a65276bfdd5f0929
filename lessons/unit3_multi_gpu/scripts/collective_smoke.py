"""A smoke test of a process group: init, all_reduce, one DDP step (``hpdl gpu-check``).

Every rank all-reduces ``rank + 1`` (the sum must be p(p+1)/2), then takes one SGD step of
a DistributedDataParallel model on its own batch; afterwards every rank must hold the same
parameters (checked with a second all-reduce of their sum). NCCL with a GPU per rank,
Gloo on CPUs: ``hpdl gpu-check`` runs it on NCCL, the tests on Gloo.

    PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        lessons/unit3_multi_gpu/scripts/collective_smoke.py
"""

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils.training import dist


def main() -> None:
    info = dist.init()
    device = torch.device(info.device)
    p = info.world_size
    value = torch.tensor([float(info.rank + 1)], device=device)
    tdist.all_reduce(value)
    assert value.item() == p * (p + 1) / 2, f"all_reduce gave {value.item()}"

    torch.manual_seed(0)
    net = torch.nn.Linear(7, 3).to(device)
    model = DDP(net, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(100 + info.rank)  # each rank its own batch
    x, y = torch.randn(5, 7, device=device), torch.randn(5, 3, device=device)
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    local = torch.cat([q.detach().reshape(-1) for q in net.parameters()])
    total = local.clone()
    tdist.all_reduce(total)
    assert torch.allclose(total, p * local, rtol=1e-6, atol=1e-6), "replicas differ after a step"
    dist.save_result({"rank": info.rank, "world_size": p, "backend": info.backend,
                      "device": info.device, "all_reduce": value.item()})
    dist.finish()


if __name__ == "__main__":
    main()
    dist.exit_now()
