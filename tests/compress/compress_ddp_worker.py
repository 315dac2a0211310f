"""Fine-tune a tiny compressed UHDformer; run alone or under torchrun. Writes the weights to argv[1]."""

import sys

import torch
import torch.distributed as dist

from sparsesel.compress import apply, plan
from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.nets import zoo

torch.set_num_threads(1)
if __name__ == "__main__":
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    teacher = zoo.build_net("uhdformer", "small")
    student = apply(teacher, plan(teacher, 0.6))
    config = FinetuneConfig(steps=3, batch_size=4, patch_size=32, lr=1e-3, seed=3)
    finetune(student, teacher, config, progress=False)
    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save(student.state_dict(), sys.argv[1])
    if dist.is_initialized():
        dist.destroy_process_group()
