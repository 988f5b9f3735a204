"""``scratchcnn sweep``: run a study (many training runs over a search space) on Ray Tune."""

from __future__ import annotations

import argparse

HELP = """Run a study: the training config of a study file, with the fields of its [space] table
varied, each trial an ordinary training run in its own run folder, run as Ray Tune trials.

Without --address, Ray starts on this machine by itself (no setup); with --address the same
command runs on an existing Ray cluster. Options given here override the study file's [study]
table. The study folder (--out) receives study.json, trials.json, trials/<id>/ (each trial's
run folder), results.csv and results.json (every trial's config, best validation accuracy,
test accuracy, time and status), summary.png and report.html, which links every trial.

  scratchcnn sweep studies/smoke.toml --set data=../shared/datasets/cifar10-jpeg.zip
  scratchcnn sweep studies/lr_batch_asha.toml --num-samples 16 --max-concurrent 2
  scratchcnn sweep --resume runs/sweep-smoke        # continue an interrupted study
  scratchcnn sweep --summarize runs/sweep-smoke     # redraw the table, figure and report

--resume reads Ray Tune's saved state, which uses pickle: resume only study folders you made."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sweep",
        help="run a study (a search over training settings) on Ray Tune",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("study", nargs="?", metavar="STUDY.toml", help="the study file to run")
    what.add_argument(
        "--resume", metavar="DIR", help="continue the study in DIR: finished trials are kept"
    )
    what.add_argument(
        "--summarize",
        metavar="DIR",
        help="rewrite DIR's results table, summary figure and report from its trials' records",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="the study folder (default: runs/sweep-<study name>)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a [train] setting of the study file, e.g. --set data=cifar10.zip "
        "--set epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: start "
        "Ray on this machine",
    )
    parser.add_argument(
        "--num-samples", type=int, metavar="N", help="draws of the space (or repeats of a grid)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, metavar="N", help="trials at once (default: as CPUs allow)"
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=int,
        metavar="N",
        help="CPUs per trial; each trial's compute threads are set to match (default: 1)",
    )
    parser.add_argument(
        "--scheduler",
        choices=["fifo", "asha"],
        help="asha stops poor trials early; fifo runs every trial to the end",
    )
    parser.add_argument(
        "--search", choices=["random", "optuna"], help="how trials are drawn (default: random)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import fail
    from scratchcnn.data import DataError

    try:
        if args.summarize:
            from scratchcnn.studies.summary import summarize

            summary = summarize(args.summarize)
            print(f"{len(summary.rows)} trial(s); wrote {summary.table_csv}, {summary.report}")
            return 0
        outcome = _run(args)
    except ImportError as err:
        return fail(f"{err} (sweeps need Ray Tune: pip install 'scratchcnn[sweep]')")
    except (DataError, FileNotFoundError, FileExistsError, ConnectionError, ValueError) as err:
        return fail(str(err))
    if outcome.interrupted:
        print(f"interrupted; continue with: scratchcnn sweep --resume {outcome.out}")
        return 130
    for row in outcome.failed:
        print(f"trial {row.trial} failed: {row.error}")
    return 1 if outcome.failed else 0


def _run(args: argparse.Namespace):
    from pathlib import Path

    from scratchcnn.studies.spec import load_study, parse_override
    from scratchcnn.studies.sweep import run_study

    options = {
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
        "cpus_per_trial": args.cpus_per_trial,
        "scheduler": args.scheduler,
        "search": args.search,
    }
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        if given or args.overrides or args.out:
            raise ValueError(
                f"--resume continues a study with its saved settings; drop {given or '--set/--out'}"
            )
        return run_study(None, args.resume, address=args.address, resume=True)
    overrides = dict(parse_override(text) for text in args.overrides)
    study = load_study(args.study, overrides).with_options(**options)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{study.name}"
    return run_study(study, out, address=args.address)
