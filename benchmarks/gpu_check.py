"""The whole GPU check in one command: the speed benchmarks and what fits of
the experiments, each under its own time limit, one Markdown summary and one
JSON file at the end.

A GPU is lent for minutes at a time (15 minutes a session, 10 a command), so
everything that needs one is prepared here and tried on a CPU first
(``--smoke``). Sections run in order of what they settle, each a subprocess
under its own limit, cut to what is left of ``--budget``; a section that
fails or runs out of time is recorded as such and the next one starts, so a
slow part cannot take the rest down. Each section's own JSON (its
``--json``) is gathered into ``OUT/gpu_check.json``; ``OUT/summary.md`` has
one row per section and each section's last lines; ``OUT/log`` everything,
as it was printed.

    python benchmarks/gpu_check.py OUT                       # on the GPU machine (9 minutes at most)
    python benchmarks/gpu_check.py OUT --only step,together  # some sections
    python benchmarks/gpu_check.py OUT --smoke               # tiny sizes on the CPU: that it all runs

Sections (``--list``): first, the fidelity check (issue 23): ilsvrc's
ResNet-20 against the independent reference trainer at the paper's 64k
steps, five seeds each on the same CIFAR-10 (``benchmarks/fidelity.py``:
ilsvrc's seeds stacked into one step, the reference's as processes beside
it; its runs are kept outside OUT, whose files come back, and each line
it prints is in OUT/log); then the LRN kernel's tests and AlexNet's step variants
(issue 12), runs side by side against one after another (issue 13), the
ResNet-20 recipe at its 64k steps beside the tutorial loop on CIFAR-10
(issue 11), where the step's time goes for ResNet-110 and GoogLeNet, the
loader on Imagenette (its folder, which pack_for_gpu.py does not prepare:
carry it, or the section is skipped), and the resnet-cifar experiment at
its paper budget with the runs together (only with ``--only``: it needs the
machine to itself for longer than the rest). The data a section needs is
looked for under ``--cifar`` and ``--imagenette-folder``
(``benchmarks/pack_for_gpu.py`` makes the first); a section whose data is
absent is skipped, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BENCH = REPO / "benchmarks"
TAIL = 15  # lines of each section's output kept in the summary
NOISE = ("USDT:", "ERROR:20", "STAGE:")  # the profiler's own chatter: in the log, not in the summary


def sections(a) -> list[dict]:
    """The check's sections in order: name, limit (s), command, the JSON it
    writes, the data it needs (None: none), and whether it runs by default."""
    out = Path(a.out)

    def section(name, limit, argv, needs=None, default=True, env=None, writes_json=True):
        """A benchmark script is asked for its figures as JSON; a test run or a command is not."""
        js = out / f"{name}.json"
        argv = [str(x) for x in argv] + (["--json", str(js)] if writes_json else [])
        return {"name": name, "limit": limit, "argv": argv, "json": js, "needs": needs, "default": default, "env": env or {}}

    if a.smoke:  # tiny sizes on the CPU: the check's own machinery, in about ten seconds
        # two seeds of the smallest network with a recipe, stacked: its three ways compile in 8 s of a core (resnet-20 and
        # plain-20's, 25 s); the plain twin stacking with the residual network is tests/test_stacked.py's
        return [section("together", 120, [PY, BENCH / "together.py", "--recipe", "alexnet-fig1", "--models", "alexnet-fig1",
                                          "--copies", "2", "--backend", "aot_eager",
                                          "--device", "cpu", "--batch-size", "2", "--images", "6", "--steps", "2",
                                          "--warmup", "1"])]
    cifar = Path(a.cifar)
    return [
        section("fidelity", 520, [PY, BENCH / "fidelity.py", "--data", cifar, "--iterations", "64000", "--seeds", "5",
                                  "--variants", "reference-bf16,graph-bf16", "--device", "cuda", "--out",
                                  "/tmp/ilsvrc-fidelity", "--no-progress"], needs=cifar),
        section("lrn_kernel", 90, [PY, "-m", "pytest", "-q", "-p", "no:logging", REPO / "tests" / "test_lrn_triton.py"],
                env={"ILSVRC_LRN_KERNEL": "1"}, writes_json=False),
        section("alexnet_step", 200, [PY, BENCH / "step.py", "--device", "cuda", "--variants", "--whole-step",
                                      "--steps", "10", "--repeats", "3", "--warmup", "3"]),
        section("together", 240, [PY, BENCH / "together.py", "--models", "resnet-20", "--copies", "8", "--steps", "150",
                                  "--images", "20000"]),
        section("cifar_recipe", 300, [PY, BENCH / "cifar_recipe.py", "--data", cifar, "--stock-iterations", "3000",
                                      "--workers", "8", "--no-progress"], needs=cifar),
        section("resnet110_profile", 150, [PY, BENCH / "step_profile.py", "--model", "resnet-110", "--modes", "graph"]),
        section("googlenet_profile", 120, [PY, BENCH / "step_profile.py", "--recipe", "googlenet", "--modes", "graph",
                                           "--images", "2560", "--steps", "30", "--warmup", "3", "--profile-steps", "10"]),
        # the loader benchmark races torchvision's DataLoader over the JPEG files: it needs the folder, not a store
        section("loader", 120, [PY, BENCH / "loader.py", "--data", a.imagenette_folder, "--device", "cuda"],
                needs=Path(a.imagenette_folder)),
        section("compile_time", 300, [PY, BENCH / "compile_time.py", "--models", "resnet-20", "--copies", "1,8"],
                default=False),
        section("resnet_cifar_paper", 590, [PY, "-m", "ilsvrc", "experiment", "resnet-cifar", "--budget", "paper",
                                            "--data", cifar, "--out", out / "resnet-cifar-paper", "--no-progress"],
                needs=cifar, default=False, writes_json=False),
    ]


def run_section(s: dict, limit: float, log) -> dict:
    """Run one section under ``limit`` seconds; its record."""
    head = f"## {s['name']} (at most {limit:.0f} s): {' '.join(s['argv'])}"
    print(head, file=log, flush=True)
    print(head, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **s["env"]}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.Popen(s["argv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=REPO, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the section and whatever it started (loader workers, compile workers)
        out, _ = proc.communicate()
        status = "timed out"
    seconds = time.perf_counter() - start
    for line in out.splitlines():
        print(line, file=log)
    lines = [line for line in out.splitlines() if not line.startswith(NOISE)]
    print(f"## {s['name']}: {status} after {seconds:.0f} s", file=log, flush=True)
    print("\n".join(lines[-TAIL:] + [f"## {s['name']}: {status} after {seconds:.0f} s"]), flush=True)
    result = json.loads(s["json"].read_text()) if s["json"].is_file() else None
    return {"name": s["name"], "status": status, "seconds": round(seconds, 1), "limit_s": round(limit),
            "command": " ".join(s["argv"]), "result": result, "tail": lines[-TAIL:]}


def check(todo: list[dict], out: Path, budget: float) -> dict:
    """Run the sections ``todo`` within ``budget`` seconds in all; write
    ``out/gpu_check.json``, ``out/summary.md`` and ``out/log``."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget
    records = [machine()]
    with open(out / "log", "w") as log:
        for s in todo:
            left = deadline - time.perf_counter()
            if s["needs"] is not None and not Path(s["needs"]).exists():
                records.append({"name": s["name"], "status": f"skipped: {s['needs']} is not here"})
            elif left < 20:
                records.append({"name": s["name"], "status": f"skipped: {left:.0f} s left"})
            else:
                records.append(run_section(s, min(s["limit"], left), log))
    summary = {"sections": records}
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(records))
    return summary


def machine() -> dict:
    """The device and versions, as a section of its own."""
    import torch
    import torchvision

    info = {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d"), "device": "CPU"}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    return {"name": "machine", "status": "ok", "result": info}


def markdown(records: list[dict]) -> str:
    info = records[0]["result"]
    lines = [f"# GPU check, {info['date']}", "",
             f"{info['device']}; torch {info['torch']}, torchvision {info['torchvision']}, triton {info.get('triton', '-')}"
             f", python {info['python']}", "", "| section | status | seconds |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['status']} | {r.get('seconds', '-')} |" for r in records[1:]]
    for r in records[1:]:
        if r.get("tail"):
            lines += ["", f"## {r['name']}", "", f"`{r['command']}`", "", "```text", *r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder for gpu_check.json, summary.md, log and each section's JSON")
    p.add_argument("--budget", type=float, default=540, help="seconds for the whole check (default: 540)")
    p.add_argument("--only", help="comma-separated sections to run, in the check's order (--list shows them)")
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    p.add_argument("--cifar", default=".gpu/cifar10-32", help="CIFAR-10: a packed store or an ImageFolder root (default: .gpu/cifar10-32)")
    p.add_argument("--imagenette-folder", default=".gpu/imagenette",
                   help="Imagenette as an ImageFolder, for the loader section (default: .gpu/imagenette; absent: skipped)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: that the check runs, not what it measures")
    a = p.parse_args(argv)
    todo = sections(a)
    if a.list:
        for s in todo:
            print(f"{s['name']:20s} {s['limit']:4d} s{'' if s['default'] else '  (only with --only)'}  {' '.join(s['argv'][1:])}")
        return 0
    if a.only:
        names = a.only.split(",")
        unknown = sorted(set(names) - {s["name"] for s in todo})
        if unknown:
            p.error(f"unknown section(s) {', '.join(unknown)}; --list shows them")
        todo = [s for s in todo if s["name"] in names]
    else:
        todo = [s for s in todo if s["default"]]
    summary = check(todo, Path(a.out), a.budget)
    print(f"\nsummary: {Path(a.out) / 'summary.md'}")
    for r in summary["sections"][1:]:
        print(f"  {r['name']:20s} {r['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
