"""A single self-contained HTML report of a study, readable offline (plotly.js inlined).

Each figure is stored as plotly JSON in a ``<script type="application/json">`` block and
drawn by one small script, so the file works from a mail attachment and tests can read
every figure back with an HTML parser.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import PRUNE_COMPANION_ATTR
from hpo.confirm import Confirmation, read_confirmation
from hpo.duplicates import DUPLICATE_OF_ATTR
from hpo.objective import prune_study_name
from hpo.results import best_trials, load_existing_study
from hpo.storages import mask_url, storage_url
from hpo.workers.budget import is_replaced, replaced_numbers

if TYPE_CHECKING:
    from hpo.config import StudyConfig

logger = logging.getLogger(__name__)

TOP_TRIALS = 10


MIN_TRIALS_FOR_IMPORTANCES = 2
"""Optuna 5 draws importances from one trial as an even split, which reads as a finding."""


@dataclass
class Figure:
    """One section of the report: a plotly figure, or why it could not be drawn."""

    key: str
    title: str
    figure_json: str | None
    unavailable: str | None = None


def _targets(study: optuna.Study, names: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """(objective name, plot ``target``, importance ``target``) per objective.

    Single-objective studies need no target (``None``). Optuna's default importance
    evaluator ranks parameters by how they reach *low* target values, so a maximized
    objective is negated for importances only.
    """
    if len(study.directions) == 1:
        return [(names[0] if names else "objective", None, None)]
    out: list[tuple[str, Any, Any]] = []
    for i, name in enumerate(names[: len(study.directions)]):
        sign = -1.0 if study.directions[i] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        out.append(
            (
                name,
                lambda t, i=i: float(t.values[i]),
                lambda t, i=i, sign=sign: sign * float(t.values[i]),
            )
        )
    return out


def _figure(key: str, title: str, make: Callable[[], Any]) -> Figure:
    try:
        with warnings.catch_warnings():
            # Advice aimed at interactive users (few trials per regime, target sign).
            warnings.simplefilter("ignore", UserWarning)
            fig = make()
    except Exception as exc:  # e.g. importances need two completed trials
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.info("report: %s not available: %s", key, reason)
        return Figure(key, title, None, reason)
    fig.update_layout(title=title)
    return Figure(key, title, fig.to_json())


def curves_study(study: optuna.Study, cfg: StudyConfig) -> optuna.Study:
    """The study holding per-epoch curves: the pruning companion where there is one."""
    if not cfg.uses_prune_companion:
        return study
    try:
        return optuna.load_study(study_name=prune_study_name(cfg), storage=study._storage)
    except KeyError:
        return study


def companion_numbers(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """Trial number -> its twin's number in the pruning companion (which holds its curve)."""
    out = {}
    for t in trials:
        number = t.user_attrs.get(PRUNE_COMPANION_ATTR)
        if isinstance(number, int):
            out[t.number] = number
    return out


def plot_curves(study: optuna.Study, curves: optuna.Study) -> Any:
    """Per-epoch curves, each named by the study's own trial number.

    A companion's numbers drift from the study's (a reused duplicate makes no companion
    trial), so its traces are renamed, and one whose study trial is unknown is left out
    rather than shown under another trial's number.
    """
    import optuna.visualization as vis

    fig = vis.plot_intermediate_values(curves)
    if curves is study:
        return fig
    names = {
        f"Trial{companion}": f"Trial{number}"
        for number, companion in companion_numbers(study.get_trials(deepcopy=False)).items()
    }
    fig.data = [trace for trace in fig.data if trace.name in names]
    fig.for_each_trace(lambda trace: trace.update(name=names[trace.name]))
    return fig


def build_figures(
    study: optuna.Study,
    names: Sequence[str],
    pruning_metric: str,
    curves: optuna.Study | None = None,
) -> list[Figure]:
    """Optimization history, intermediate values, importances, parallel coordinates, slices."""
    import optuna.visualization as vis

    figures: list[Figure] = []
    targets = _targets(study, names)
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    multi = len(targets) > 1
    for name, target, _ in targets:
        figures.append(
            _figure(
                f"history-{name}" if multi else "history",
                f"Optimization history ({name})" if multi else "Optimization history",
                partial(vis.plot_optimization_history, study, target=target, target_name=name),
            )
        )
    figures.append(
        _figure(
            "intermediate",
            f"Intermediate values ({pruning_metric} per epoch)",
            partial(plot_curves, study, curves or study),
        )
    )
    for name, target, importance_target in targets:
        suffix = f" ({name})" if multi else ""
        tag = f"-{name}" if multi else ""
        plots: list[tuple[str, str, Callable[..., Any], Any]] = [
            ("importances", "Parameter importances", vis.plot_param_importances, importance_target),
            ("parallel", "Parallel coordinates", vis.plot_parallel_coordinate, target),
            ("slice", "Slice plots", vis.plot_slice, target),
        ]
        for key, title, plot, plot_target in plots:
            if key == "importances" and completed < MIN_TRIALS_FOR_IMPORTANCES:
                reason = (
                    f"needs {MIN_TRIALS_FOR_IMPORTANCES} completed trials "
                    f"(the study has {completed})"
                )
                figures.append(Figure(key + tag, title + suffix, None, reason))
                continue
            figures.append(
                _figure(
                    key + tag,
                    title + suffix,
                    partial(plot, study, target=plot_target, target_name=name),
                )
            )
    return figures


RETRIED_KEY = "retried or surplus"
"""Count of trials a retry replaced (or surplus starts): spent compute, not failures."""


def state_counts(trials: Sequence[FrozenTrial], replaced: set[int] | None = None) -> dict[str, int]:
    """Trials by state, in the order a reader cares about, as ``hpo status`` counts them.

    A trial replaced by its retry (after a crash or Ctrl-C) or a surplus start is counted
    under :data:`RETRIED_KEY`, not by its state: it is not a failure of the configuration.
    ``replaced`` defaults to the numbers the retries in ``trials`` name; pass it when
    ``trials`` leaves out the (queued) retries.
    """
    if replaced is None:
        replaced = replaced_numbers(trials)
    kept = [t for t in trials if not is_replaced(t, replaced)]
    order = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    counts = {s.name.lower(): sum(1 for t in kept if t.state == s) for s in order}
    waiting = sum(1 for t in kept if t.state == TrialState.WAITING)
    if waiting:
        counts["waiting"] = waiting
    if len(trials) > len(kept):
        counts[RETRIED_KEY] = len(trials) - len(kept)
    return counts


def top_trials(study: optuna.Study, k: int = TOP_TRIALS) -> list[FrozenTrial]:
    """Best completed trials by the first objective (ties: earlier trial first).

    A reused duplicate is left out: it repeats a trial above it, value for value, with no
    training (wall time 0, no seed) of its own.
    """
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and DUPLICATE_OF_ATTR not in t.user_attrs
    ]
    done.sort(key=lambda t: ((-1 if maximize else 1) * float(t.values[0]), t.number))
    return done[:k]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _trials_table(trials: Sequence[FrozenTrial], names: Sequence[str]) -> str:
    params = sorted({p for t in trials for p in t.params})
    header = ["rank", "trial", *names, *params, "wall s", "seed"]
    rows = []
    for rank, t in enumerate(trials, start=1):
        cells = [
            rank,
            t.number,
            *[_fmt(v) for v in (t.values or [])][: len(names)],
            *[_fmt(t.params[p]) if p in t.params else "" for p in params],
            _fmt(t.user_attrs.get("wall_seconds", "")),
            t.user_attrs.get("seed", ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    return (
        f'<table id="top-trials"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
        if rows
        else '<p id="top-trials" class="unavailable">No completed trial yet.</p>'
    )


def _confirmation_table(confirmation: Confirmation | None) -> str:
    """The finalists ``hpo confirm`` trained again, or nothing when it was never run."""
    if confirmation is None:
        return ""
    pick = confirmation.best()
    params = sorted({p for f in confirmation.finalists for p in f.params})
    header = ["trial", "search value", "confirmed mean", "sd", "runs", "failed", "to run", *params]
    rows = []
    for f in confirmation.finalists:
        cells = [
            f"{f.trial}{' (pick)' if pick is not None and pick.trial == f.trial else ''}",
            _fmt(f.search_value),
            _fmt(f.mean),
            "" if f.sd is None else _fmt(f.sd),
            len(f.values),
            f.failed,
            f.pending,
            *[_fmt(f.params[p]) if p in f.params else "" for p in params],
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    seeds = ", ".join(map(str, confirmation.seeds))
    return (
        f"<h2>Confirmation ({html.escape(confirmation.study_name)}, seeds {seeds})</h2>"
        f'<table id="confirmation"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
.plot { width: 100%; min-height: 450px; }
.unavailable { color: #777; font-style: italic; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: bold; }
"""

_DRAW = """
document.querySelectorAll('script[type="application/json"][data-plot]').forEach(function (s) {
  var fig = JSON.parse(s.textContent);
  Plotly.newPlot(s.dataset.plot, fig.data, fig.layout,
                 {responsive: true, displaylogo: false});
});
"""


def _script_json(text: str) -> str:
    """JSON safe inside ``<script>``: ``</`` cannot end the element early."""
    return text.replace("</", "<\\/")


def render_html(
    *,
    title: str,
    meta: dict[str, str],
    counts: dict[str, int],
    table: str,
    figures: Sequence[Figure],
    confirmation: str = "",
) -> str:
    """The report page."""
    from plotly.offline import get_plotlyjs

    meta_html = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in meta.items()
    )
    counts_html = "".join(
        f'<tr><th>{html.escape(k)}</th><td data-state="{html.escape(k)}">{v}</td></tr>'
        for k, v in counts.items()
    )
    sections = []
    for fig in figures:
        body = (
            f'<div id="plot-{fig.key}" class="plot"></div>'
            f'<script type="application/json" data-plot="plot-{fig.key}">'
            f"{_script_json(fig.figure_json)}</script>"
            if fig.figure_json is not None
            else f'<p class="unavailable">Not available: {html.escape(fig.unavailable or "")}</p>'
        )
        sections.append(
            f'<section id="section-{fig.key}"><h2>{html.escape(fig.title)}</h2>{body}</section>'
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>{html.escape(title)}</h1>"
        f'<dl class="meta">{meta_html}</dl>'
        f'<h2>Trials</h2><table id="counts">{counts_html}</table>'
        f"<h2>Top trials</h2>{table}"
        f"{confirmation}"
        f"{''.join(sections)}"
        f'<script type="text/javascript">{_DRAW}</script>'
        "</body></html>\n"
    )


def build_report(cfg: StudyConfig) -> str:
    """The report of the study in ``cfg`` as HTML text."""
    study = load_existing_study(cfg)
    names = cfg.objective.names
    trials = study.get_trials(deepcopy=False)
    directions = ", ".join(
        f"{d} {n}" for n, d in zip(names, cfg.objective.study_directions, strict=False)
    )
    meta = {
        "study": study.study_name,
        "storage": mask_url(storage_url(cfg)),
        "objective": directions,
        "trainer": str(study.user_attrs.get("hpo:trainer", cfg.trainer.name)),
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    best = best_trials(study)  # the trial hpo best names (multi-objective: ranked front)
    if best:
        meta["best trial"] = f"{best[0].number} ({', '.join(_fmt(v) for v in best[0].values)})"
    confirmation = read_confirmation(cfg, study)
    pick = confirmation.best() if confirmation is not None else None
    if confirmation is not None and pick is not None:
        meta["confirmed pick"] = (
            f"{pick.trial} (mean {_fmt(pick.mean)} over {len(pick.values)} runs at fresh seeds"
            + (f"; {confirmation.pending} runs to go" if confirmation.pending else "")
            + ("; out of date: newer trials rank among the finalists" if confirmation.stale else "")
            + ")"
        )
    figures = build_figures(study, names, cfg.objective.pruning_metric, curves_study(study, cfg))
    return render_html(
        title=f"HPO report: {study.study_name}",
        meta=meta,
        counts=state_counts(trials),
        table=_trials_table(top_trials(study), names),
        figures=figures,
        confirmation=_confirmation_table(confirmation),
    )


def write_report(cfg: StudyConfig, path: str | Path) -> Path:
    """Write the report to ``path`` (folders created) and return it; never over the study
    file, its storage or a SQLite database (:class:`ConfigError`, as ``hpo report -o``)."""
    from hpo.output_files import check_output_file, write_output_file

    check_output_file(path, "path", "report.html", cfg)  # as given: "dir/" is a folder
    return write_output_file(Path(path), build_report(cfg))
