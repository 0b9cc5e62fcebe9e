"""Stage `report`: one self-contained HTML page from the stages' outputs.

python -m workflow_scripts.cli.report --model DIR --dataset NAME=DIR ... --out results/report/index.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workflow_scripts.cli import run_cli
from workflow_scripts.core.artifacts import write_text
from workflow_scripts.report.alignment import alignment_section
from workflow_scripts.report.data import datasets_section, model_section
from workflow_scripts.report.evaluation import cost_section, evaluation_section, predictions_section
from workflow_scripts.report.html import build_report
from workflow_scripts.report.pairs import pairs_section
from workflow_scripts.report.record import reproducibility_record
from workflow_scripts.report.rollout import repair_study_section, rollout_section
from workflow_scripts.report.summary import DEMO_INTRO, summary_section
from workflow_scripts.report.training import training_section


def _named_dirs(values: list[str]) -> dict[str, Path]:
    return {v.split("=", 1)[0]: Path(v.split("=", 1)[1]) for v in values}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--title", default="Text-to-SQL post-training report")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--prediction", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rollout", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--retrieval", type=Path, help="retrieval recall Parquet of the eval data set")
    parser.add_argument("--pairs", type=Path, help="quality.json of the Synth20 merge")
    parser.add_argument("--evaluation", type=Path, help="directory of the compare stage")
    parser.add_argument("--alignment", type=Path, help="directory of the alignment stage")
    parser.add_argument("--repair-study", type=Path, help="study.parquet of the repair study")
    parser.add_argument("--cost", action="append", default=[], metavar="VARIANT=DIR", help="eval rollout dir")
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=DIR", help="a trained adapter"
    )
    parser.add_argument("--intro", help="the Summary's opening text (report.intro)")
    parser.add_argument("--demo", action="store_true", help="the run is the embedded demo (built-in intro)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    sections = []
    if args.evaluation:
        intro = args.intro or (DEMO_INTRO if args.demo else None)
        sections.append(("summary", "Summary", summary_section(args.evaluation, args.alignment, intro)))
    sections += [
        ("data", "Data sets", datasets_section(_named_dirs(args.dataset))),
        ("model", "Base model", model_section(args.model)),
    ]
    if args.rollout:
        sections.append(("rollout", "Rollouts", rollout_section(_named_dirs(args.rollout), args.retrieval)))
    if args.pairs:
        sections.append(("pairs", "Preference pairs", pairs_section(args.pairs)))
    if args.adapter:
        sections.append(("training", "Training", training_section(_named_dirs(args.adapter))))
    if args.evaluation:
        sections.append(("evaluation", "Evaluation matrix", evaluation_section(args.evaluation)))
    if args.cost:
        sections.append(("cost", "Query cost", cost_section(_named_dirs(args.cost))))
    if args.repair_study:
        sections.append(("repair-study", "Repair study", repair_study_section(args.repair_study)))
    if args.alignment:
        sections.append(("alignment", "Alignment", alignment_section(args.alignment)))
    if args.prediction:
        sections.append(
            ("predictions", "External predictions", predictions_section(_named_dirs(args.prediction)))
        )
    record = reproducibility_record(_named_dirs(args.dataset), _named_dirs(args.rollout))
    write_text(build_report(args.title, sections, record), args.out)


if __name__ == "__main__":
    run_cli(main)
