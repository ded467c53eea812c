"""``python -m augmax_lib sweep``: one job per (config, seed), each an ordinary train then evaluate.

Examples::

    python -m augmax_lib sweep configs/cifar10 --profile quick --seeds 0 1 2 --out runs/quick --max-parallel 2
    python -m augmax_lib sweep configs/cifar10/resnet18_normal.yaml --profile smoke \\
        --set data.dataset=synthetic --set data.options.n=400 --executor debug --seeds 0
    python -m augmax_lib sweep configs --executor slurm --slurm-partition gpu --timeout-min 600
    python -m augmax_lib sweep configs/imagenet --executor slurm --gpus-per-job 4 --nodes 2 --max-num-timeout 20
    python -m augmax_lib sweep --status --out runs/quick
    python -m augmax_lib sweep --cancel --out runs/full

Runs go to ``<out>/<config name>/seed<k>/`` (evaluation in its ``evaluation/``). A complete run is skipped,
a partial one resumes from its ``last.pt``, and a run whose job is still pending, running or requeued (its
``seed<k>.lock`` names the job; Slurm is asked with sacct) is left to that job. Then
``python -m augmax_lib tables <out>`` makes the tables.
"""
from __future__ import annotations

import argparse
import shlex
import sys


def _key_value(text: str) -> tuple:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the sweep command."""
    parser.add_argument("configs", nargs="*", metavar="CONFIG_OR_FOLDER",
                        help="config files or folders of them (searched recursively; profiles/ is left out)")
    parser.add_argument("--profile", default=None, metavar="NAME",
                        help="overlay for every job: smoke, quick, full, or a YAML file (as train --profile)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="K",
                        help="training seeds; one job per config and seed (default: 0 1 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every job, e.g. --set eval.images_per_set=1000 (repeatable)")
    parser.add_argument("--eval-args", default="", metavar="ARGS",
                        help="further arguments of `evaluate --run` in every job, one string given with '=' "
                             "since it starts with a dash, e.g. --eval-args=\"--generate-corruptions --skip spatial\"")
    parser.add_argument("--out", default="runs", metavar="DIR", help="runs folder (default: runs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="each job at its config's settings capped to a few steps and images (as train "
                             "--dry-run): a check, in minutes, that a long sweep's every code path runs")
    parser.add_argument("--executor", default="local", choices=("local", "slurm", "debug"),
                        help="local: subprocesses on this machine; slurm: one job array; debug: in this process, "
                             "one after another (default: local)")
    parser.add_argument("--max-parallel", type=int, default=None, metavar="N",
                        help="jobs at once (slurm: the array's %%N, default the whole array; local: subprocesses "
                             "sharing the machine, default one per GPU slot, or one on a CPU)")
    parser.add_argument("--status", action="store_true",
                        help="show each job's state instead of running (with configs: those jobs; without: every "
                             "job submitted into --out), Slurm jobs as sacct reports them; a failed job's log tail "
                             "is printed")
    parser.add_argument("--cancel", action="store_true",
                        help="cancel the jobs that are pending, running or requeued (with configs: those jobs; "
                             "without: every job submitted into --out): scancel on Slurm, SIGINT locally. Their "
                             "last.pt stays; the next sweep resumes them")
    group = parser.add_argument_group("job resources (slurm; --timeout-min, --gpus-per-job, --tasks-per-job, "
                                      "--max-num-timeout and --signal-delay-s also local)")
    group.add_argument("--timeout-min", type=int, default=1440,
                       help="time limit of a job in minutes; at the limit it is requeued and resumes (default 1440)")
    group.add_argument("--max-num-timeout", type=int, default=3, metavar="K",
                       help="how many times a job that reaches its time limit is requeued before it is left "
                            "interrupted (preemptions do not count; default 3, submitit's: a job then runs for at "
                            "most 4 time limits. An ImageNet run needs about epochs x epoch time / limit)")
    group.add_argument("--signal-delay-s", type=int, default=120, metavar="S",
                       help="seconds before the time limit at which the job is signalled (USR2) to requeue itself; "
                            "leave time for a checkpoint to be written (default 120)")
    group.add_argument("--gpus-per-job", type=int, default=None, metavar="G",
                       help="GPUs per node of each job; more than one trains with DDP, one process per GPU "
                            "(default: slurm 1; local 1 when this machine has a GPU, else 0). Local jobs see only "
                            "the GPUs given to them")
    group.add_argument("--tasks-per-job", type=int, default=None, metavar="P",
                       help="processes per node of each job (default: one per GPU, at least one). On a CPU, P > 1 "
                            "trains with DDP over gloo (a test of the multi-process path)")
    group.add_argument("--nodes", type=int, default=1, metavar="N",
                       help="slurm: nodes per job, each running --gpus-per-job processes (DDP across nodes)")
    group.add_argument("--cpus-per-job", type=int, default=None, metavar="C", help="CPU cores per task")
    group.add_argument("--threads", type=int, default=None, metavar="T",
                       help="torch threads of each local CPU job (default: the cores shared out between the jobs that "
                            "run at once); fewer leave cores to other work")
    group.add_argument("--mem-gb", type=float, default=None, help="memory per node in GB")
    group.add_argument("--slurm-partition", default=None)
    group.add_argument("--slurm-account", default=None)
    group.add_argument("--slurm-qos", default=None)
    group.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="shell line run before each job, e.g. 'source .venv/bin/activate' (repeatable)")
    group.add_argument("--slurm-arg", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                       help="further #SBATCH --KEY=VALUE line (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Run, submit or report; 0 when every job is done or submitted, 1 when one failed, 2 for bad arguments."""
    from augmax_lib._checks import InputError, check_writable_folder, one_line
    from augmax_lib.sweep import (
        SlurmOptions,
        SweepError,
        default_gpus,
        default_threads,
        format_status,
        job_statuses,
        launch,
        plan,
        recorded_specs,
        tasks_per_job,
    )
    from augmax_lib.sweep.cancel import cancel_jobs

    try:
        try:
            eval_args = tuple(shlex.split(args.eval_args))
        except ValueError as err:
            raise SweepError(f"--eval-args: cannot split {args.eval_args!r} into arguments as a shell would ({err})")
        if args.status:
            specs = (plan(args.configs, args.seeds, args.out, args.profile, args.overrides, eval_args, dry_run=args.dry_run)
                     if args.configs else recorded_specs(args.out))
            if not specs:
                print(f"sweep --status: no jobs recorded in {args.out}/_sweep (name configs to list their jobs)")
                return 0
            print(format_status(job_statuses(specs)))
            return 0
        if args.cancel:
            specs = (plan(args.configs, args.seeds, args.out, args.profile, args.overrides, eval_args, dry_run=args.dry_run)
                     if args.configs else recorded_specs(args.out))
            cancelled = cancel_jobs(specs)
            for label, job_id, how in cancelled:
                print(f"cancelled {label}: job {job_id} ({how})")
            print(f"sweep --cancel: {len(cancelled)} job(s) cancelled of {len(specs)}; their runs keep last.pt")
            return 0
        if not args.configs:
            print("error: name at least one config file or folder (or pass --status or --cancel)", file=sys.stderr)
            return 2
        if args.gpus_per_job is None:
            args.gpus_per_job = default_gpus(args.executor)
        for name in ("gpus_per_job", "nodes", "max_num_timeout", "signal_delay_s"):
            low = 1 if name == "nodes" else 0
            if getattr(args, name) < low:
                raise SweepError(f"--{name.replace('_', '-')}: expected >= {low}, got {getattr(args, name)}")
        check_writable_folder(args.out, "--out")  # before any job is planned or started
        if args.threads is not None and args.threads < 1:
            raise SweepError(f"--threads: expected >= 1, got {args.threads}")
        options = SlurmOptions(timeout_min=args.timeout_min, gpus_per_job=args.gpus_per_job,
                               tasks_per_job=args.tasks_per_job, nodes=args.nodes,
                               max_num_timeout=args.max_num_timeout, signal_delay_s=args.signal_delay_s,
                               cpus_per_job=args.cpus_per_job, mem_gb=args.mem_gb, partition=args.slurm_partition,
                               account=args.slurm_account, qos=args.slurm_qos, setup=tuple(args.slurm_setup),
                               extra=dict(args.slurm_arg))
        threads = args.threads or default_threads(args.executor, args.max_parallel, args.gpus_per_job,
                                                  tasks_per_job(options))
        specs = plan(args.configs, args.seeds, args.out, args.profile, args.overrides, eval_args, threads,
                     dry_run=args.dry_run)
        print(f"sweep: {len(specs)} job(s) ({len(specs) // len(args.seeds)} config(s) x {len(args.seeds)} seed(s)) "
              f"into {args.out}, executor {args.executor}")
        report = launch(specs, args.executor, args.out, args.max_parallel, options)
    except (SweepError, InputError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    parts = [f"{len(report.done)} done", f"{len(report.skipped)} skipped (complete)"]
    if report.held:
        parts.append(f"{len(report.held)} left to their running job")
    if report.submitted:
        parts.append(f"{len(report.submitted)} submitted")
    if report.failed:
        parts.append(f"{len(report.failed)} failed: " + ", ".join(report.failed))
    print("sweep: " + "; ".join(parts))
    return 0 if report.ok else 1
