"""``minillama plan``: will a model train on a cluster, how much memory per GPU, and how long will it take?

Pure arithmetic on a :class:`~minillama.config.ModelConfig` (nothing is allocated), so it answers for the 405B
model on a laptop, for DDP and FSDP with or without activation checkpointing, and tensor parallelism composed
with FSDP; pipeline and context parallelism are not modelled. Three parts:
:mod:`~minillama.plan.memory` (bytes per GPU), :mod:`~minillama.plan.communication` (bytes sent, bandwidth and
the step-time plan) and :mod:`~minillama.plan.report` (tables, JSON, the command); the GPUs are
:mod:`minillama.gpus`. Chapters 8 and 9 derive every formula.
"""

from minillama.gpus import GPU, GPUS, gpu_for_device_name
from minillama.plan.communication import (
    INTERNODE_GBPS,
    TrainingPlan,
    data_parallel_gbps,
    fsdp_comm_bytes,
    parse_count,
    plan_grid,
    plan_training,
    tensor_parallel_comm_bytes,
)
from minillama.plan.memory import (
    MemoryPerGPU,
    activation_bytes,
    block_activation_bytes,
    fsdp_buffer_bytes,
    fsdp_units,
    head_activation_bytes,
    largest_fsdp_unit,
    memory_per_gpu,
    tensor_parallel_params,
)
from minillama.plan.report import add_arguments, format_plans, plan_to_dict, run

__all__ = ["GPU", "GPUS", "INTERNODE_GBPS", "MemoryPerGPU", "TrainingPlan", "activation_bytes", "add_arguments",
           "block_activation_bytes", "data_parallel_gbps", "format_plans", "fsdp_buffer_bytes", "fsdp_comm_bytes",
           "fsdp_units", "gpu_for_device_name", "head_activation_bytes", "largest_fsdp_unit", "memory_per_gpu",
           "parse_count", "plan_grid", "plan_to_dict", "plan_training", "run", "tensor_parallel_comm_bytes",
           "tensor_parallel_params"]
