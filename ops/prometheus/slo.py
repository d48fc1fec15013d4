"""Writes tally's SLO rules and their promtool tests: `make slo` rewrites rules/slo.yml and
tests/slo.test.yml from the two SLOs and the burn-rate table declared here.

Multi-window, multi-burn-rate alerts as the Google SRE workbook ("Alerting on SLOs")
writes them: an alert fires while both its long and its short window burn the error
budget faster than its rate, so it catches a fast burn within minutes and a slow one
within hours, and stops soon after the burn does (the short window empties). Each SLO
and each window pair is declared once; a static test fails when the YAML drifts.

The short windows are rates over the raw per-replica series, evaluated with every scrape.
The long ones (a day and more) never read raw samples: a group evaluated once a minute
records each SLO's bad and total rates over 5m, and a long window's ratio is the sum of
those bad rates over the window divided by the sum of the total rates. Both sums weigh
every minute by its traffic, so the ratio is the window's share of bad requests (a busy
minute counts more than a quiet one, as in a rate over the raw series), from one series
with one sample a minute instead of every replica's series at every scrape.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))
from service.metrics import LATENCY_BUCKETS, LATENCY_SLO_SECONDS  # noqa: E402

RULES = HERE / "rules" / "slo.yml"
TESTS = HERE / "tests" / "slo.test.yml"
PERIOD_DAYS = 30
# The latency SLO's threshold, the app's (it keeps the trace of every request slower):
# a bucket boundary of its histogram, so the share under it is counted exactly, not
# interpolated (docs/SLO.md says why 0.5 s).
assert LATENCY_SLO_SECONDS in LATENCY_BUCKETS, "the latency SLO's threshold must be a bucket"
LATENCY_THRESHOLD = str(LATENCY_SLO_SECONDS)
COUNT = 'job="tally", route="/count"'


@dataclass(frozen=True)
class Slo:
    name: str  # the `slo` label and the alert's name: Tally<Name>BudgetBurn
    objective: float
    what: str  # completes "share of /count requests ..."
    errors: str  # PromQL rate of bad events over [$w]
    total: str  # PromQL rate of all events over [$w]

    @property
    def alert(self) -> str:
        return f"Tally{self.name.capitalize()}BudgetBurn"

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 10)


@dataclass(frozen=True)
class Window:
    severity: str  # "page" or "ticket": Alertmanager routes on it
    burn_rate: float
    long: str
    short: str
    wait: str  # the rule's `for`: a single evaluation's spike does not notify

    @property
    def days_to_empty(self) -> float:
        return PERIOD_DAYS / self.burn_rate


SLOS = (
    Slo(
        "availability",
        0.999,
        "answered without a 5xx",
        # 0, not empty, while there are no 5xx series at all.
        f'sum by (job) (rate(http_requests_total{{{COUNT}, status=~"5.."}}[$w]))'
        f" or 0 * sum by (job) (rate(http_requests_total{{{COUNT}}}[$w]))",
        f"sum by (job) (rate(http_requests_total{{{COUNT}}}[$w]))",
    ),
    Slo(
        "latency",
        0.99,
        f"answered within {LATENCY_THRESHOLD} s",
        f"sum by (job) (rate(http_request_duration_seconds_count{{{COUNT}}}[$w]))"
        " - sum by (job) (rate(http_request_duration_seconds_bucket"
        f'{{{COUNT}, le="{LATENCY_THRESHOLD}"}}[$w]))',
        f"sum by (job) (rate(http_request_duration_seconds_count{{{COUNT}}}[$w]))",
    ),
)

# The workbook's table for a 30-day SLO: 2% of the budget in 1 h, 5% in 6 h (pages),
# 10% in 1 d and 10% in 3 d (tickets).
WINDOWS = (
    Window("page", 14.4, "1h", "5m", "2m"),
    Window("page", 6, "6h", "30m", "15m"),
    Window("ticket", 3, "1d", "2h", "1h"),
    Window("ticket", 1, "3d", "6h", "3h"),
)
# Every window the alerts read, plus the whole period for the error budget's dashboard:
# the short ones from the raw series, the long ones from the recorded 5m rates.
SHORT_WINDOWS = ("5m", "30m", "1h", "2h", "6h")
LONG_WINDOWS = ("1d", "3d", f"{PERIOD_DAYS}d")
RATIO_WINDOWS = SHORT_WINDOWS + LONG_WINDOWS
# The long windows' group: a minute's staleness is nothing next to a day, and the
# recorded rates it sums are one sample a minute, whatever the scrape interval.
LONG_INTERVAL = "1m"
# The recorded rates the long windows sum: over 5m, so that each minute's sample still
# sees more than one scrape of every replica.
STEP = "5m"
ERRORS_RATE = f"slo:sli_errors:rate{STEP}"
TOTAL_RATE = f"slo:sli_requests:rate{STEP}"


def ratio(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def number(value: float) -> str:
    return f"{value:g}"


def short_rules(slo: Slo) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "record": "slo:objective:ratio",
            "expr": number(slo.objective),
            "labels": {"slo": slo.name},
        }
    ]
    for window in SHORT_WINDOWS:
        errors, total = (
            slo.errors.replace("$w", window),
            slo.total.replace("$w", window),
        )
        rules.append(
            {
                "record": ratio(window),
                "expr": f"(\n  {errors}\n)\n/\n{total}\n",
                "labels": {"slo": slo.name},
            }
        )
    return rules


def long_rules(slo: Slo) -> list[dict[str, Any]]:
    selector = f'{{slo="{slo.name}"}}'
    rules: list[dict[str, Any]] = [
        {"record": ERRORS_RATE, "expr": slo.errors.replace("$w", STEP) + "\n"},
        {"record": TOTAL_RATE, "expr": slo.total.replace("$w", STEP) + "\n"},
    ]
    for window in LONG_WINDOWS:
        rules.append(
            {
                "record": ratio(window),
                "expr": f"sum_over_time({ERRORS_RATE}{selector}[{window}])\n/\n"
                f"sum_over_time({TOTAL_RATE}{selector}[{window}])\n",
            }
        )
    return [{**rule, "labels": {"slo": slo.name}} for rule in rules]


def alert_labels(slo: Slo, window: Window) -> dict[str, str]:
    return {"severity": window.severity, "slo": slo.name, "window": window.long}


def alert_annotations(slo: Slo, window: Window) -> dict[str, str]:
    threshold = window.burn_rate * slo.budget
    return {
        "summary": f"The {slo.name} SLO of /count burns its error budget {window.burn_rate:g}x"
        f" too fast ({window.long})",
        "description": (
            f"Over both the last {window.long} and {window.short}, more than"
            f" {threshold:.3%} of /count requests were not {slo.what} (objective"
            f" {slo.objective:.1%} over {PERIOD_DAYS} days): at this rate the whole error"
            f" budget is gone in {window.days_to_empty:.1f} days."
        ),
        "runbook_url": f"docs/RUNBOOK.md#{slo.alert.lower()}",
    }


def alerting_rules(slo: Slo) -> list[dict[str, Any]]:
    selector = f'{{slo="{slo.name}"}}'
    rules = []
    for window in WINDOWS:
        threshold = f"{number(window.burn_rate)} * {number(slo.budget)}"
        rules.append(
            {
                "alert": slo.alert,
                "expr": (
                    f"{ratio(window.long)}{selector} > {threshold}\n"
                    f"and\n{ratio(window.short)}{selector} > {threshold}\n"
                ),
                "for": window.wait,
                "labels": alert_labels(slo, window),
                "annotations": alert_annotations(slo, window),
            }
        )
    return rules


def rules() -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    for slo in SLOS:
        groups.append({"name": f"slo.{slo.name}", "rules": short_rules(slo) + alerting_rules(slo)})
        groups.append(
            {"name": f"slo.{slo.name}.long", "interval": LONG_INTERVAL, "rules": long_rules(slo)}
        )
    return {"groups": groups}


# promtool tests: /count at 10 requests/s, one sample a minute.
PER_MINUTE = 600


def minutes(duration: str) -> int:
    return int(duration[:-1]) * {"m": 1, "h": 60, "d": 1440}[duration[-1]]


def series(slo: Slo, bad: list[tuple[int, int]]) -> list[dict[str, str]]:
    """Input series for `slo` where bad[i] = (steps, bad requests per step)."""
    steps = sum(count for count, _ in bad)
    total_values = f"0+{PER_MINUTE}x{steps}"
    bad_values, value = ["0"], 0
    for count, per_step in bad:
        bad_values.append(f"{value + per_step}+{per_step}x{count - 1}")
        value += per_step * count
    if slo.name == "availability":
        return [
            {
                "series": f'http_requests_total{{{COUNT}, instance="a", method="GET",'
                ' status="200"}',
                "values": total_values,
            },
            {
                "series": f'http_requests_total{{{COUNT}, instance="a", method="GET",'
                ' status="503"}',
                "values": " ".join(bad_values),
            },
        ]
    # Latency: the bucket counts the good requests, _count all of them.
    good_values, value = ["0"], 0
    for count, per_step in bad:
        good = PER_MINUTE - per_step
        good_values.append(f"{value + good}+{good}x{count - 1}")
        value += good * count
    return [
        {
            "series": f'http_request_duration_seconds_count{{{COUNT}, instance="a", method="GET"}}',
            "values": total_values,
        },
        {
            "series": f'http_request_duration_seconds_bucket{{{COUNT}, instance="a",'
            f' method="GET", le="{LATENCY_THRESHOLD}"}}',
            "values": " ".join(good_values),
        },
    ]


def expected(slo: Slo, window: Window) -> dict[str, Any]:
    return {
        "exp_labels": {"job": "tally", **alert_labels(slo, window)},
        "exp_annotations": alert_annotations(slo, window),
    }


def weighting_case() -> dict[str, Any]:
    """A long window is the share of bad requests, not the mean of the 5m ratios: an hour
    at 600 requests a minute, none bad, then an hour at 60 with 10% bad is 360 bad of
    39,600, 0.91%; the mean of the ratios would be 5%."""
    quiet, bad, hour = PER_MINUTE // 10, PER_MINUTE // 100, 60
    good_after = hour * PER_MINUTE + quiet - bad
    ratio_1d = f'{ratio("1d")}{{slo="availability"}}'
    return {
        "name": "availability: the 1d ratio weighs each minute by its traffic",
        "interval": "1m",
        "input_series": [
            {
                "series": f'http_requests_total{{{COUNT}, instance="a", method="GET",'
                ' status="200"}',
                "values": f"0+{PER_MINUTE}x{hour} {good_after}+{quiet - bad}x{hour - 1}",
            },
            {
                "series": f'http_requests_total{{{COUNT}, instance="a", method="GET",'
                ' status="503"}',
                "values": f"0x{hour} {bad}+{bad}x{hour - 1}",
            },
        ],
        "promql_expr_test": [
            {
                # Within 5% of 0.91%: the 5m rates smear the edges of the step a little.
                "expr": f"({ratio_1d} > bool 0.0086) * ({ratio_1d} < bool 0.0096)",
                "eval_time": f"{2 * hour}m",
                "exp_samples": [{"labels": '{job="tally", slo="availability"}', "value": 1}],
            }
        ],
    }


def tests() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    for slo in SLOS:
        for index, window in enumerate(WINDOWS):
            # A steady burn between this window's rate and the next faster one's: this
            # alert fires after its `for`, the faster ones never (under their rate), the
            # slower ones not yet (their `for` is longer), so it fires alone.
            faster = WINDOWS[index - 1].burn_rate if index else window.burn_rate * 2
            share = (window.burn_rate + faster) / 2 * slo.budget
            per_step = round(PER_MINUTE * share)
            wait = minutes(window.wait)
            # The first rate exists one step in; the alert fires `for` later.
            fires_at = 1 + wait
            burn = [(fires_at + 2, per_step)]
            evals = [
                {"eval_time": f"{fires_at - 1}m", "alertname": slo.alert, "exp_alerts": []},
                {
                    "eval_time": f"{fires_at + 1}m",
                    "alertname": slo.alert,
                    "exp_alerts": [expected(slo, window)],
                },
            ]
            name = (
                f"{slo.name}: a steady {window.burn_rate:g}x burn fires the"
                f" {window.long}/{window.short} {window.severity} after {window.wait}"
            )
            if not index:
                # The fastest page resolves once its short window holds no more of the burn
                # (the stack tier sees one fire live; this is its end, without the wait).
                short = minutes(window.short)
                burn.append((short + 3, 0))
                evals.append(
                    {
                        "eval_time": f"{fires_at + 2 + short + 1}m",
                        "alertname": slo.alert,
                        "exp_alerts": [],
                    }
                )
                name += f", and is resolved once its {window.short} window holds none of it"
            cases.append(
                {
                    "name": name,
                    "interval": "1m",
                    "input_series": series(slo, burn),
                    "alert_rule_test": evals,
                }
            )
        # A blip after a clean day: half the bad requests the fastest page needs in its
        # long window, within minutes. The short windows spike, every long window stays
        # under its threshold, so nothing fires.
        day, fastest = minutes("1d"), WINDOWS[0]
        bad = round(fastest.burn_rate * slo.budget * PER_MINUTE * minutes(fastest.long) / 2)
        blip = -(-bad // (PER_MINUTE // 2))
        cases.append(
            {
                "name": f"{slo.name}: a {blip}-minute blip after a clean day stays silent",
                "interval": "1m",
                "input_series": series(slo, [(day, 0), (blip, bad // blip), (240, 0)]),
                "alert_rule_test": [
                    {"eval_time": f"{day + offset}m", "alertname": slo.alert, "exp_alerts": []}
                    for offset in (blip, blip + 5, 30, 70, 200)
                ],
            }
        )
    cases.append(weighting_case())
    return {
        "rule_files": ["../rules/slo.yml"],
        "evaluation_interval": "1m",
        "tests": cases,
    }


HEADER = "# Generated by ops/prometheus/slo.py (`make slo`); edit that, not this file.\n"


class Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as a person would write them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _string)


def render(document: dict[str, Any]) -> str:
    return HEADER + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=100)


def main() -> None:
    RULES.write_text(render(rules()))
    TESTS.write_text(render(tests()))
    print(f"wrote {RULES} and {TESTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
