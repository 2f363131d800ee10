"""``minillama info``: what this machine offers the book — versions, accelerators and CPU threads.

The first thing to run when something behaves differently on your machine than in the book, and the first thing
to paste into a bug report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib import metadata

# Packages whose versions explain most differences between a reader's run and the book's.
REPORTED_PACKAGES = ("minillama", "numpy", "torch", "tiktoken", "regex", "safetensors", "matplotlib", "transformers")


def package_versions(names: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, or ``None`` when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_report() -> dict:
    """The devices PyTorch can use here, best first: CUDA GPUs, Apple's MPS, then the CPU."""
    import torch

    devices: list[dict] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "device": f"cuda:{index}",
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}",
                    "bf16": torch.cuda.is_bf16_supported(),
                }
            )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"device": "mps", "name": "Apple Metal (MPS)"})
    devices.append({"device": "cpu", "name": platform.processor() or platform.machine()})
    return {
        "best": devices[0]["device"],
        "devices": devices,
        "cuda_version": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
    }


def environment_report() -> dict:
    """Everything ``minillama info`` prints, as a dict (the setup chapter displays it too)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        **device_report(),
    }


def format_report(report: dict) -> str:
    """Human-readable form of :func:`environment_report`."""
    lines = [f"python        {report['python']} on {report['platform']}"]
    for name, version in report["packages"].items():
        lines.append(f"{name:<14}{version or 'not installed'}")
    lines.append(f"cpu cores     {report['cpu_count']} (torch uses {report['torch_threads']} threads)")
    if report["cuda_version"]:
        lines.append(f"cuda          {report['cuda_version']}")
    for device in report["devices"]:
        extras = ", ".join(f"{k}={v}" for k, v in device.items() if k not in ("device", "name"))
        lines.append(f"device        {device['device']:<8}{device['name']}" + (f" ({extras})" if extras else ""))
    lines.append(f"best device   {report['best']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = environment_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
