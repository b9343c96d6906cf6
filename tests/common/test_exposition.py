"""Prometheus' text format as `exposition` writes it: what promtool accepts, escaped as the format
says, and names that cannot break its rules."""

from __future__ import annotations

import pytest

from entrypoint.common import exposition
from entrypoint.common.exposition import Family, Sample
from tests import promtool


def test_a_family_is_its_help_its_type_then_its_samples_and_promtool_accepts_it() -> None:
    text = exposition.render(
        [
            exposition.one("app_up", "gauge", "1 while it runs", 1),
            exposition.labelled(
                "app_restarts_total", "counter", "Restarts", "cause", [("crash", 2), ("operator", 0)]
            ),
            exposition.one("app_backoff_seconds_total", "counter", "Time in backoff", 1.25),
        ]
    )
    assert text == (
        "# HELP app_up 1 while it runs\n# TYPE app_up gauge\napp_up 1\n"
        "# HELP app_restarts_total Restarts\n# TYPE app_restarts_total counter\n"
        'app_restarts_total{cause="crash"} 2\napp_restarts_total{cause="operator"} 0\n'
        "# HELP app_backoff_seconds_total Time in backoff\n# TYPE app_backoff_seconds_total counter\n"
        "app_backoff_seconds_total 1.25\n"
    )
    promtool.check(text)


def test_label_values_and_help_are_escaped_as_the_format_says() -> None:
    awkward = 'a "quoted" back\\slash and a\nnewline'
    text = exposition.render(
        [exposition.labelled("app_info", "gauge", "Help with a \\ and a\nnewline", "version", [(awkward, 1)])]
    )
    assert "# HELP app_info Help with a \\\\ and a\\nnewline\n" in text
    assert 'app_info{version="a \\"quoted\\" back\\\\slash and a\\nnewline"} 1\n' in text
    promtool.check(text)


def test_a_family_without_samples_is_left_out_entirely() -> None:
    assert exposition.render([exposition.one("app_last_exit_code", "gauge", "Last exit code", None)]) == ""


@pytest.mark.parametrize(
    ("name", "kind"),
    [("app_restarts", "counter"), ("app_up_total", "gauge"), ("appUp", "gauge"), ("app-up", "gauge")],
)
def test_a_name_that_breaks_the_rules_is_refused_at_once(name: str, kind: exposition.Kind) -> None:
    with pytest.raises(ValueError):
        Family(name, kind, "help", (Sample(1),))


def test_numbers_are_written_as_prometheus_reads_them() -> None:
    values = [0, 7, 0.5, float("nan"), float("inf"), -1]
    text = exposition.render(
        [exposition.labelled("app_value", "gauge", "v", "n", [(str(i), v) for i, v in enumerate(values)])]
    )
    assert [line.rsplit(" ", 1)[1] for line in text.splitlines()[2:]] == [
        "0",
        "7",
        "0.5",
        "NaN",
        "+Inf",
        "-1",
    ]
