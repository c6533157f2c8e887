"""The chart's Grafana dashboard, drawn from a real run of the operator, for the docs.

A reader deciding whether to install the dashboard wants to see it with real figures, and
Grafana and Prometheus do not run where the docs are built. So this script does their part:
it runs the operator against the emulators (as ``operator_scale.py`` does), makes it work
(``--count`` EnvSyncs created, then random ConfigMaps edited at ``--edit-rate`` for
``--minutes``), scrapes its /metrics every ``--scrape-seconds`` as Prometheus would, and then
evaluates each panel's own PromQL from ``charts/envsync/files/dashboard.json`` over the scraped
samples. The evaluator covers the subset the dashboard uses, with Prometheus's arithmetic
(``rate`` extrapolated to the window's edges, ``histogram_quantile`` interpolated linearly
inside a bucket), so each curve is what the panel would show. Titles, layout, units and legends
are read from the dashboard too: the picture follows the dashboard when it changes.

matplotlib comes with the ``bench`` extra (``pip install -e '.[test,bench]'``). The scrapes are
kept (``--scrapes``) so the figure can be drawn again without a new run::

    python bench/dashboard.py                          # 50 EnvSyncs, 2 edits/s for 4 minutes
    python bench/dashboard.py --minutes 1 --out /tmp/dashboard.png   # a quick look
    python bench/dashboard.py --replay bench/.data/dashboard-scrapes.json   # redraw only
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import pathlib
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # a file, never a window

import matplotlib.pyplot as plt
import promql_parser
import psutil
from matplotlib.axes import Axes
from matplotlib.figure import SubFigure
from matplotlib.gridspec import GridSpec
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator
from prometheus_client.parser import text_string_to_metric_families

import _cluster
import _util
from envsync.cli import sandbox, sandboxclient
from operator_rss import CHILD, create_apps, operator_env, ready_count

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "envsync" / "files" / "dashboard.json"
SCRAPES = pathlib.Path(__file__).resolve().parent / ".data" / "dashboard-scrapes.json"
JOB = "envsync-metrics"
"""The job label Prometheus would add (the chart's ServiceMonitor names it so)."""
LOOKBACK = 300.0
"""Prometheus's lookback delta: an instant selector reads the latest sample this recent."""

# Grafana's dark theme and its classic palette, so the figure reads like the dashboard.
BACKGROUND, PANEL, BORDER = "#111217", "#181b1f", "#2c3235"
TEXT, MUTED, GRID = "#ccccdc", "#8e8e9f", "#2a2d33"
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a6",
           "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c")  # fmt: skip
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a", "orange": "#ff9830"}

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]


# -- the run ----------------------------------------------------------------------------------


class Scraper:
    """Prometheus's part: one GET of /metrics every ``every`` seconds, kept with its time."""

    def __init__(self, url: str, every: float, t0: float) -> None:
        self.url, self.every, self.t0 = url, every, t0
        self.scrapes: list[tuple[float, str]] = []
        self.failed = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        start = time.monotonic()
        tick = 0
        while not self._done.is_set():
            at = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.every) as resp:
                    self.scrapes.append((at - self.t0, resp.read().decode()))
            except OSError:
                self.failed += 1
            tick += 1
            self._done.wait(max(0.0, start + tick * self.every - time.monotonic()))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The operator at work under scrapes: the scrapes, the phases' times and the run's facts."""
    namespace = "dashboard"
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-dashboard-"))
    port = _util.free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with _cluster.start(args.kube, workdir) as kube, sandbox.AwsServer() as aws:
        _cluster.ensure_namespace(kube.client, namespace)
        env = operator_env(kube, aws, workdir)
        env["ENVSYNC_METRICS_PORT"] = str(port)
        with (workdir / "operator.log").open("w") as log:
            t0 = time.monotonic()
            child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=log, stderr=log)
            try:
                _await_metrics(url, child)
                with Scraper(url, args.scrape_seconds, t0) as scraper:
                    facts = _work(args, kube.client, namespace, child, t0)
            finally:
                child.terminate()
                child.wait(timeout=60)
    if facts is None:
        raise SystemExit(f"the operator stopped or never converged; see {workdir / 'operator.log'}")
    facts.update(
        kube=args.kube, count=args.count, keys=args.keys, edit_rate=args.edit_rate,
        minutes=args.minutes, scrape_seconds=args.scrape_seconds, failed_scrapes=scraper.failed,
        cores=psutil.cpu_count(), python=platform.python_version(),
    )  # fmt: skip
    return {"facts": facts, "scrapes": scraper.scrapes}


def _await_metrics(url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the operator's /metrics never answered")


def _work(
    args: argparse.Namespace,
    client: sandboxclient.KubeClient,
    namespace: str,
    child: subprocess.Popen[bytes],
    t0: float,
) -> dict[str, Any] | None:
    """Idle, create and converge, pause, edit at a steady rate, pause: the phases a reader
    tells apart on the panels."""
    marks: dict[str, float] = {}
    time.sleep(args.quiet_seconds)
    marks["EnvSyncs created"] = time.monotonic() - t0
    create_apps(client, namespace, args.count, args.keys)
    while ready_count(client, namespace) < args.count:
        if child.poll() is not None or time.monotonic() - t0 > 1800:
            return None
        time.sleep(1.0)
    marks["all Ready"] = time.monotonic() - t0
    time.sleep(args.quiet_seconds)

    rng = random.Random(args.seed)
    values = [[f"value-{i}-{k}" for k in range(args.keys)] for i in range(args.count)]
    marks["edits begin"] = start = time.monotonic() - t0
    edits, late = 0, 0.0
    while (now := time.monotonic() - t0) < start + args.minutes * 60:
        if child.poll() is not None:
            return None
        due = start + edits / args.edit_rate
        if due > now:
            time.sleep(due - now)
        else:
            late = max(late, now - due)
        i, k = rng.randrange(args.count), rng.randrange(args.keys)
        values[i][k] = f"edit-{edits}"
        text = "".join(f"KEY_{n}={value}\n" for n, value in enumerate(values[i]))
        path = sandboxclient.resource_path("v1", "configmaps", namespace, f"env-{i}")
        client.patch(path, {"data": {".env": text}})
        edits += 1
    marks["edits end"] = end = time.monotonic() - t0
    time.sleep(args.quiet_seconds)
    return {
        "marks": marks,
        "edits": edits,
        "edit_rate_achieved": edits / (end - start),
        "edits_most_late": late,
        "converge_seconds": marks["all Ready"] - marks["EnvSyncs created"],
    }


# -- the samples ------------------------------------------------------------------------------


@dataclass
class Series:
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def parse_scrapes(scrapes: list[tuple[float, str]]) -> dict[str, dict[Labels, Series]]:
    """Every sample of every scrape by metric and label set, with the labels Prometheus adds."""
    store: dict[str, dict[Labels, Series]] = {}
    for at, text in scrapes:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {**sample.labels, "job": JOB, "__name__": sample.name}
                key = tuple(sorted(labels.items()))
                series = store.setdefault(sample.name, {}).setdefault(key, Series())
                series.times.append(at)
                series.values.append(float(sample.value))
    return store


# -- PromQL, the subset the dashboard uses ----------------------------------------------------


class Evaluator:
    """Instant queries at time ``t`` over the scraped samples, as Prometheus answers them."""

    def __init__(self, store: dict[str, dict[Labels, Series]]) -> None:
        self.store = store

    def __call__(self, expr: promql_parser.Expr, t: float) -> Vector | float:
        if isinstance(expr, promql_parser.ParenExpr):
            return self(expr.expr, t)
        if isinstance(expr, promql_parser.NumberLiteral):
            return float(expr.val)
        if isinstance(expr, promql_parser.VectorSelector):
            return {
                labels: s.values[i - 1]
                for labels, s in self._select(expr)
                if (i := bisect.bisect_right(s.times, t)) and t - s.times[i - 1] <= LOOKBACK
            }
        if isinstance(expr, promql_parser.Call):
            return self._call(expr, t)
        if isinstance(expr, promql_parser.AggregateExpr):
            return self._aggregate(expr, t)
        if isinstance(expr, promql_parser.BinaryExpr):
            return _binary(str(expr.op), self(expr.lhs, t), self(expr.rhs, t))
        raise NotImplementedError(f"PromQL not covered here: {type(expr).__name__}")

    def _select(self, selector: promql_parser.VectorSelector) -> Iterator[tuple[Labels, Series]]:
        for labels, series in self.store.get(selector.name or "", {}).items():
            have = dict(labels)
            if all(_matches(m, have.get(m.name, "")) for m in selector.matchers.matchers):
                yield labels, series

    def _call(self, call: promql_parser.Call, t: float) -> Vector:
        name = call.func.name
        if name in ("rate", "increase"):
            matrix = call.args[0]
            assert isinstance(matrix, promql_parser.MatrixSelector)
            window = matrix.range.total_seconds()
            result: Vector = {}
            for labels, series in self._select(matrix.vector_selector):
                lo = bisect.bisect_right(series.times, t - window)  # (t - window, t]
                hi = bisect.bisect_right(series.times, t)
                value = extrapolated_rate(
                    series.times[lo:hi], series.values[lo:hi], t - window, t, rate=name == "rate"
                )
                if value is not None:
                    result[_without(labels, "__name__")] = value
            return result
        if name == "histogram_quantile":
            q = self(call.args[0], t)
            vector = self(call.args[1], t)
            assert isinstance(q, float)
            assert isinstance(vector, dict)
            groups: dict[Labels, list[tuple[float, float]]] = {}
            for labels, value in vector.items():
                le = dict(labels).get("le")
                if le is not None:
                    key = _without(labels, "le", "__name__")
                    groups.setdefault(key, []).append((float(le), value))
            return {labels: bucket_quantile(q, buckets) for labels, buckets in groups.items()}
        raise NotImplementedError(f"PromQL function not covered here: {name}")

    def _aggregate(self, agg: promql_parser.AggregateExpr, t: float) -> Vector:
        vector = self(agg.expr, t)
        assert isinstance(vector, dict)
        op = str(agg.op)
        modifier = agg.modifier
        groups: dict[Labels, list[float]] = {}
        for labels, value in vector.items():
            if modifier is None:
                key: Labels = ()
            elif modifier.type == promql_parser.AggModifierType.By:
                key = tuple((k, v) for k, v in labels if k in modifier.labels)
            else:
                key = _without(labels, "__name__", *modifier.labels)
            groups.setdefault(key, []).append(value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": math.fsum, "min": min, "max": max, "count": len, "avg": statistics.fmean,
        }  # fmt: skip
        if op not in reduce:
            raise NotImplementedError(f"PromQL aggregation not covered here: {op}")
        return {key: float(reduce[op](values)) for key, values in groups.items()}


def _matches(matcher: promql_parser.Matcher, value: str) -> bool:
    op = matcher.op
    if op == promql_parser.MatchOp.Equal:
        return value == matcher.value
    if op == promql_parser.MatchOp.NotEqual:
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None
    return found if op == promql_parser.MatchOp.Re else not found


def _without(labels: Labels, *names: str) -> Labels:
    return tuple((k, v) for k, v in labels if k not in names)


def _binary(op: str, lhs: Vector | float, rhs: Vector | float) -> Vector | float:
    """Arithmetic between vectors matched one-to-one on all their labels, or with a scalar."""
    ops = {"+": float.__add__, "-": float.__sub__, "*": float.__mul__, "/": _divide}
    if op not in ops:
        raise NotImplementedError(f"PromQL operator not covered here: {op}")
    apply = ops[op]
    if isinstance(lhs, float) and isinstance(rhs, float):
        return apply(lhs, rhs)
    if isinstance(rhs, float):
        assert isinstance(lhs, dict)
        return {_without(k, "__name__"): apply(v, rhs) for k, v in lhs.items()}
    if isinstance(lhs, float):
        return {_without(k, "__name__"): apply(lhs, v) for k, v in rhs.items()}
    right = {_without(k, "__name__"): v for k, v in rhs.items()}
    result: Vector = {}
    for labels, value in lhs.items():
        key = _without(labels, "__name__")
        if key in right:
            result[key] = apply(value, right[key])
    return result


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def extrapolated_rate(
    times: list[float], values: list[float], start: float, end: float, *, rate: bool
) -> float | None:
    """Prometheus's ``rate``/``increase`` of a counter over the samples in (start, end]: the
    increase between the first and last sample, counter resets added back, extrapolated to the
    window's edges (by half a scrape interval at most where samples stop short, never below
    zero), per second for ``rate``."""
    if len(times) < 2:
        return None
    increase = values[-1] - values[0]
    for before, after in itertools.pairwise(values):
        if after < before:
            increase += before
    sampled = times[-1] - times[0]
    to_start, to_end = times[0] - start, end - times[-1]
    average = sampled / (len(times) - 1)
    if increase > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * values[0] / increase)
    threshold = average * 1.1
    span = sampled
    span += to_start if to_start < threshold else average / 2
    span += to_end if to_end < threshold else average / 2
    increase *= span / sampled
    return increase / (end - start) if rate else increase


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` over (upper bound, cumulative count) pairs: the
    bucket holding the q-th observation, interpolated linearly inside it."""
    if math.isnan(q) or q < 0 or q > 1:
        return math.nan if math.isnan(q) else math.copysign(math.inf, q)
    merged: dict[float, float] = {}
    for upper, count in buckets:
        merged[upper] = merged.get(upper, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    counts = [count for _, count in ordered]
    for i in range(1, len(counts)):  # rates of separate series can dip: keep them monotonic
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    b = bisect.bisect_left(counts, rank)
    if b == len(counts) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    lower = ordered[b - 1][0] if b else 0.0
    below = counts[b - 1] if b else 0.0
    upper, inside = ordered[b][0], counts[b] - below
    return lower + (upper - lower) * ((rank - below) / inside)


# -- the panels -------------------------------------------------------------------------------


@dataclass
class Curve:
    label: str
    values: list[float]


@dataclass
class Panel:
    title: str
    kind: str
    unit: str
    grid: Mapping[str, int]
    thresholds: list[tuple[float, str]]
    curves: list[Curve]


def evaluate_panels(
    dashboard: dict[str, Any], store: dict[str, dict[Labels, Series]], steps: list[float],
    window: float,
) -> list[Panel]:  # fmt: skip
    """Each panel's queries at every step, one curve per series, labelled by legendFormat."""
    evaluate = Evaluator(store)
    panels = []
    for spec in dashboard["panels"]:
        defaults = (spec.get("fieldConfig") or {}).get("defaults") or {}
        steps_spec = (defaults.get("thresholds") or {}).get("steps") or []
        thresholds = [
            (-math.inf if s["value"] is None else float(s["value"]), s["color"]) for s in steps_spec
        ]
        curves: list[Curve] = []
        for target in spec.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", f"{window:g}s")
            expr = expr.replace("$job", JOB)
            if "$" in expr:
                raise NotImplementedError(f"a dashboard variable not covered here: {expr}")
            parsed = promql_parser.parse(expr)
            by_series: dict[Labels, list[float]] = {}
            for n, t in enumerate(steps):
                result = evaluate(parsed, t)
                vector = result if isinstance(result, dict) else {(): result}
                for labels, value in vector.items():
                    by_series.setdefault(labels, [math.nan] * len(steps))[n] = value
            for labels, values in sorted(by_series.items()):
                curves.append(Curve(_legend(target.get("legendFormat"), labels), values))
        panels.append(
            Panel(spec["title"], spec.get("type", "timeseries"), defaults.get("unit", "short"),
                  spec["gridPos"], thresholds, curves)
        )  # fmt: skip
    return panels


def _legend(template: str | None, labels: Labels) -> str:
    if not template:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"
    have = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: have.get(m.group(1), ""), template).strip()


def _num(value: float) -> str:
    """Three significant digits at most, no exponent: 0.0123, 1.5, 12.3, 1,024."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt(value: float, unit: str) -> str:
    """A value in a panel's unit, as Grafana writes it."""
    if math.isnan(value):
        return "-"
    if unit == "s":
        if value and abs(value) < 1:
            return f"{_num(value * 1000)} ms"
        return f"{_num(value)} s"
    if unit == "bytes":
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return f"{_num(value / size)} {name}"
        return f"{_num(value)} B"
    suffix = {"ops": " ops/s", "reqps": " req/s"}.get(unit, "")
    return _num(value) + suffix


# -- the figure -------------------------------------------------------------------------------


def draw(
    panels: list[Panel], steps: list[float], facts: dict[str, Any], window: float,
    out: pathlib.Path,
) -> None:  # fmt: skip
    """The panels where the dashboard puts them (24 columns, rows of Grafana's 30 px)."""
    rows = max(p.grid["y"] + p.grid["h"] for p in panels)
    width, row_inches, header = 20.0, 0.36, 0.75
    height = rows * row_inches + header
    fig = plt.figure(figsize=(width, height), facecolor=BACKGROUND, dpi=100)
    # subfigures take a grid's ratios, not its margins: the header is a row of its own
    grid = GridSpec(rows + 1, 24, figure=fig, height_ratios=[header / row_inches] + [1.0] * rows)
    marks = facts["marks"]
    fig.text(
        0.006, 1 - 0.3 * header / height,
        f"envsync  ·  {facts['count']} EnvSyncs × {facts['keys']} keys, then "
        f"{facts['edit_rate']:g} ConfigMap edits/s for {facts['minutes']:g} min  ·  "
        f"{facts['kube']} and moto, {facts['cores']} cores",
        color=TEXT, fontsize=13, va="center",
    )  # fmt: skip
    fig.text(
        0.006, 1 - 0.72 * header / height,
        f"scraped every {facts['scrape_seconds']:g} s, rate() over {window:g} s  ·  dashed: "
        + "  ·  ".join(f"{name} {_clock(at)}" for name, at in marks.items())
        + "  ·  time in minutes since the operator started",
        color=MUTED, fontsize=10.5, va="center",
    )  # fmt: skip
    for panel in panels:
        g = panel.grid
        sub = fig.add_subfigure(grid[1 + g["y"] : 1 + g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        size = (width * g["w"] / 24, row_inches * g["h"])
        _frame(sub, panel.title)
        if panel.kind == "stat":
            _stat(sub, panel, steps)
        else:
            _timeseries(sub, panel, steps, marks, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BACKGROUND, dpi=100)
    plt.close(fig)


def _frame(sub: SubFigure, title: str) -> None:
    """A panel's card: its background, a border, the title at the top left."""
    sub.set_facecolor(BACKGROUND)
    sub.patches.append(
        FancyBboxPatch(
            (0.004, 0.008), 0.992, 0.984, boxstyle="round,pad=0,rounding_size=0.008",
            transform=sub.transSubfigure, facecolor=PANEL, edgecolor=BORDER, linewidth=1, zorder=-1,
        )
    )  # fmt: skip
    sub.text(0.015, 0.955, title, color=TEXT, fontsize=11, fontweight="bold", va="top")


def _stat(sub: SubFigure, panel: Panel, steps: list[float]) -> None:
    """Grafana's stat: the last value, coloured by the thresholds, over an area sparkline."""
    values = panel.curves[0].values if panel.curves else []
    last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
    color = TEXT
    for bound, name in panel.thresholds:
        if not math.isnan(last) and last >= bound:
            color = NAMED.get(name, name)
    text = "No data" if math.isnan(last) else fmt(last, panel.unit)
    sub.text(0.5, 0.55, text, color=color, fontsize=40 if values else 14, fontweight="bold",
             ha="center", va="center")  # fmt: skip
    if values:
        ax = sub.add_axes((0.03, 0.05, 0.94, 0.3))
        ax.fill_between(steps, [0 if math.isnan(v) else v for v in values], color=color,
                        alpha=0.25, linewidth=0)  # fmt: skip
        ax.plot(steps, values, color=color, linewidth=1.2)
        ax.set_ylim(bottom=0, top=max([1.0, *(v for v in values if not math.isnan(v))]))
        ax.set_axis_off()


def _timeseries(
    sub: SubFigure, panel: Panel, steps: list[float], marks: dict[str, float],
    size: tuple[float, float],
) -> None:  # fmt: skip
    """Grafana's time series: one line per series, unit on the axis, legend below as a list."""
    width, height = size
    labels = [c.label for c in panel.curves]
    per_item = 0.45 + 0.075 * max((len(label) for label in labels), default=1)
    columns = max(1, min(len(labels), int((width - 0.9) / per_item)))
    legend_rows = math.ceil(len(labels) / columns) if labels else 0
    left, right, top = 0.95 / width, 0.2 / width, 0.42 / height
    bottom = (0.32 + 0.2 * legend_rows + 0.06) / height
    ax = sub.add_axes((left, bottom, 1 - left - right, 1 - top - bottom))
    _style(ax, panel.unit)
    handles: list[Line2D] = []
    finite: list[float] = []
    for n, curve in enumerate(panel.curves):
        (line,) = ax.plot(steps, curve.values, color=PALETTE[n % len(PALETTE)], linewidth=1.5)
        handles.append(line)
        finite += [v for v in curve.values if math.isfinite(v)]
    for at in marks.values():
        ax.axvline(at, color=MUTED, linewidth=0.8, linestyle=(0, (4, 4)), alpha=0.7)
    ax.set_xlim(steps[0], steps[-1])
    if not finite:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, color=MUTED, fontsize=13,
                ha="center", va="center")  # fmt: skip
    elif min(finite) >= 0:
        ax.set_ylim(bottom=0, top=max(finite) * 1.08 or 1)
    if panel.unit == "bytes":  # 32 MiB steps, not 143 MiB ones
        top = ax.get_ylim()[1]
        ax.yaxis.set_major_locator(MultipleLocator(2 ** math.ceil(math.log2(max(top, 4) / 4))))
    if handles:
        sub.legend(handles, labels, loc="lower left", bbox_to_anchor=(left - 0.01, 0.02),
                   ncol=columns, frameon=False, fontsize=9, labelcolor=TEXT, handlelength=1.4,
                   columnspacing=1.4, borderaxespad=0.2)  # fmt: skip


def _style(ax: Axes, unit: str) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=9, length=0, pad=4)
    ax.grid(color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(MultipleLocator(60))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _clock(v)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


# -- the report -------------------------------------------------------------------------------


def report(
    data: dict[str, Any], store: dict[str, dict[Labels, Series]], panels: list[Panel],
    steps: list[float], window: float,
) -> None:  # fmt: skip
    """What was scraped, and each curve while the edits ran (median, highest): the figures a
    caption may quote."""
    facts, scrapes = data["facts"], data["scrapes"]
    marks = facts["marks"]
    series = sum(len(by_labels) for by_labels in store.values())
    samples = sum(len(s.times) for by_labels in store.values() for s in by_labels.values())
    print("| scraped | value |\n|---|---|")
    rows = [
        ("run", f"{facts['count']} EnvSyncs × {facts['keys']} keys, {facts['kube']} and moto, "
                f"{facts['cores']} cores, Python {facts['python']}"),
        ("converged (created → all Ready)", f"{facts['converge_seconds']:.1f} s"),
        ("edits", f"{facts['edits']} in {marks['edits end'] - marks['edits begin']:.0f} s "
                  f"({facts['edit_rate_achieved']:.2f}/s; most behind schedule "
                  f"{facts['edits_most_late'] * 1000:.0f} ms)"),
        ("scrapes", f"{len(scrapes)} every {facts['scrape_seconds']:g} s over "
                    f"{_clock(scrapes[-1][0] - scrapes[0][0])} ({facts['failed_scrapes']} failed)"),
        ("metrics, series, samples kept", f"{len(store)}, {series}, {samples:,}"),
    ]  # fmt: skip
    for label, value in rows:
        print(f"| {label} | {value} |")
    # from one rate window into the edits, so no rate still holds the convergence before them
    lo = bisect.bisect_left(steps, marks["edits begin"] + window)
    hi = bisect.bisect_right(steps, marks["edits end"])
    print(
        f"\n| panel | series | while editing ({_clock(steps[lo])}-{_clock(steps[hi - 1])}): "
        "median | highest |\n|---|---|---|---|"
    )
    for panel in panels:
        for curve in panel.curves:
            values = [v for v in curve.values[lo:hi] if not math.isnan(v)]
            median = statistics.median(values) if values else math.nan
            high = max(values) if values else math.nan
            print(f"| {panel.title} | {curve.label} | {fmt(median, panel.unit)} | "
                  f"{fmt(high, panel.unit)} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50, help="EnvSyncs (one ConfigMap each)")
    parser.add_argument("--keys", type=int, default=50, help="variables per ConfigMap")
    parser.add_argument("--minutes", type=float, default=4.0, help="how long to edit")
    parser.add_argument("--edit-rate", type=float, default=2.0, help="ConfigMap edits a second")
    parser.add_argument("--scrape-seconds", type=float, default=5.0, help="scrape interval")
    parser.add_argument(
        "--rate-window", type=float, default=30.0,
        help="seconds of rate() windows, in place of Grafana's $__rate_interval",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-seconds", type=float, default=20.0, help="pause before and after each phase"
    )
    parser.add_argument(
        "--kube", choices=("emulator", "apiserver"), default="emulator",
        help="kmock's emulator (in this process), or a real kube-apiserver on etcd",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="which ConfigMaps and keys are edited")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs/images/dashboard.png")
    parser.add_argument(
        "--scrapes", type=pathlib.Path, default=SCRAPES, help="where to keep the scrapes"
    )
    parser.add_argument(
        "--replay", type=pathlib.Path, help="draw from scrapes kept by an earlier run; no run"
    )
    args = parser.parse_args()
    started = time.monotonic()
    if args.replay:
        data = json.loads(args.replay.read_text())
    else:
        data = run(args)
        args.scrapes.parent.mkdir(parents=True, exist_ok=True)
        args.scrapes.write_text(json.dumps(data))
    scrapes = data["scrapes"]
    store = parse_scrapes(scrapes)
    steps = [at for at, _ in scrapes]
    panels = evaluate_panels(json.loads(DASHBOARD.read_text()), store, steps, args.rate_window)
    draw(panels, steps, data["facts"], args.rate_window, args.out)
    report(data, store, panels, steps, args.rate_window)
    print(
        f"\n{args.out} ({args.out.stat().st_size / 1024:.0f} KiB) in "
        f"{time.monotonic() - started:.0f} s"
        + ("" if args.replay else f"; scrapes in {args.scrapes}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
