"""Under torch DDP (gloo, 2 CPU processes) the projecting optimizer keeps every rank identical."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out_dir: str, space: str) -> None:
    from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
    from projected_grpo.directions.basis import random_basis
    from projected_grpo.models import tiny_model
    from projected_grpo.projection.optimizer import ProjectingOptimizer, ProjectionConfig, modules_from_adapters

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = tiny_model("tiny-qwen3", seed=0)
    adapters = attach_adapters(model, AdapterConfig("svd"), cache_dir=os.path.join(out_dir, f"cache{rank}"))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    basis = random_basis({n: m.trainable.numel() for n, m in adapters}, k=4, seed=0)
    inner = torch.optim.AdamW(adapters.trainable_parameters(), lr=1e-2)
    opt = ProjectingOptimizer(inner, modules_from_adapters(adapters, basis.vectors), ProjectionConfig("route", space))
    gen = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    for _ in range(3):
        ids = torch.randint(0, 259, (2, 16), generator=gen)
        out = ddp(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    flat = torch.cat([p.detach().flatten() for _, m in adapters for p in (m.trainable, m.quarantine)])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"gathered": gathered, "leak": opt.last_stats["leak_own_basis"]}, os.path.join(out_dir, "result.pt"))
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter finalization. DDP keeps a C++ reference to the gloo backend, so
    # destroy_process_group() does not destroy it: its worker threads (pt_gloo_runloop) stay alive.
    # A worker that drops the last reference to a finished AsyncWork frees its tensors; freeing a
    # tensor tied to a Python object takes the GIL, and during Py_FinalizeEx CPython answers that
    # with pthread_exit, whose unwind through the noexcept ~AsyncWork is std::terminate ("terminate
    # called without an active exception", SIGABRT). No barrier orders that release before exit;
    # os._exit skips finalization, as multiprocessing's own fork children do.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_ranks_stay_identical_with_projection(tmp_path):
    for space in ("update", "grad"):
        init = tmp_path / f"init-{space}"
        mp.spawn(_worker, args=(2, str(init), str(tmp_path), space), nprocs=2, join=True)
        result = torch.load(tmp_path / "result.pt")
        a, b = result["gathered"]
        assert a.abs().sum() > 0 and torch.equal(a, b)
