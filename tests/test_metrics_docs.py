"""The README's "Metrics", held to the code: its table names every metric the init renders and
no other, with every fixed label value, and its Prometheus examples (scrape configs, alerting
rules) are what promtool accepts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from entrypoint.common import guardstate, metrics, rundir
from entrypoint.common.guardstate import HoldCause, RestartCause, Snapshot, State
from tests import promtool
from tests.common.test_metrics import boot_report
from tests.conftest import REPO

SECTION = (REPO / "README.md").read_text().split("### Metrics\n", 1)[1].split("\n### ", 1)[0]


def table_rows() -> dict[str, str]:
    """Each metric the table names -> its row."""
    rows = {}
    for row in SECTION.splitlines():
        if row.startswith("| `moltbot_"):
            for name in re.findall(r"`(moltbot_[a-z_]+)`", row.split("|")[1]):
                rows[name] = row
    return rows


def test_the_readme_names_every_metric_the_init_renders_and_only_those(tmp_path: Path) -> None:
    (tmp_path / rundir.INSTANCE_LOCK).write_text(f"{os.getpid()}\n")
    (tmp_path / rundir.SUPERVISOR_PID).write_text(f"{os.getpid()}\n")
    boot_report(tmp_path)
    running = Snapshot("gateway", State.RUNNING, 1.0, pid=os.getpid(), running_since=1.0, last_exit_code=0)
    guardstate.write(str(tmp_path), running, 2.0)
    rendered = set(re.findall(r"^# TYPE (\S+) ", metrics.render(str(tmp_path), "moltbot"), re.MULTILINE))
    assert set(table_rows()) == rendered


@pytest.mark.parametrize(
    ("metric", "values"),
    [
        ("moltbot_gateway_state", State),
        ("moltbot_gateway_held", HoldCause),
        ("moltbot_gateway_restarts_total", RestartCause),
    ],
)
def test_the_readme_lists_every_value_of_a_fixed_label(metric: str, values: type) -> None:
    row = table_rows()[metric]
    assert [value for value in values if f"`{value}`" not in row] == []


def test_the_readme_s_scrape_configs_and_alerting_rules_pass_promtool(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", SECTION, re.DOTALL)
    scrapes = [block for block in blocks if "scrape_configs:" in block]
    rules = [block for block in blocks if block.startswith("# rules.yml")]
    assert len(scrapes) == 2 and len(rules) == 1
    token = tmp_path / "token"
    token.write_text("not-a-real-token\n")
    for index, block in enumerate(scrapes):
        config = tmp_path / f"prometheus-{index}.yml"
        config.write_text(re.sub(r"credentials_file: \S+", f"credentials_file: {token}", block))
        checked = promtool.run("check", "config", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "rules.yml").write_text(rules[0])
    checked = promtool.run("check", "rules", str(tmp_path / "rules.yml"))
    assert checked.returncode == 0 and "4 rules found" in checked.stdout, checked.stdout + checked.stderr
