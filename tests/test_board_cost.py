"""Board time and wire bytes per step: counted on the wire, shown in every summary."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl_drivers import Board
from labctl_drivers.testing import expected_protocol

runner = CliRunner()


def test_every_byte_each_way_is_counted():
    with expected_protocol(Board, [(b"CHIP:GEOM?", b"1,2,3"), (b"SYST:TIME?", b"12.5")]) as board:
        board.geometry()
        assert (board.link.bytes_sent, board.link.bytes_received) == (len(b"CHIP:GEOM?\n"), len(b"1,2,3\n"))
        board.clock_s()
        assert board.link.bytes_sent == len(b"CHIP:GEOM?\nSYST:TIME?\n")
        assert board.link.bytes_received == len(b"1,2,3\n12.5\n")


def test_each_step_reports_its_board_time_above_the_links_floor(tmp_path):
    result = runner.invoke(app, ["calibrate", "--size", "32x32", "--data", str(tmp_path / "data"), "--json", "-q"])
    assert result.exit_code in (0, 1), result.output
    summary = json.loads(result.output)
    costs = {step: figures["cost"] for step, figures in summary["steps"].items()}
    assert set(costs) == set(summary["steps"])
    for step, cost in costs.items():
        assert cost["wire_bytes"] > 0, step
        assert cost["wire_s_at_link"] == pytest.approx(cost["wire_bytes"] / 1e6)
        # the twin's board charges its link at 1 MB/s both ways, so no step takes less board time than the
        # board's bytes need (but for the clock query that closes the count: 30-odd bytes)
        assert cost["board_s"] >= cost["wire_s_at_link"] - 1e-4, step
    total = summary["board_cost"]
    assert total["board_s"] == pytest.approx(sum(c["board_s"] for c in costs.values()))
    assert total["wire_bytes"] == sum(c["wire_bytes"] for c in costs.values())


def test_a_slower_link_in_lab_toml_raises_the_floor(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('[chips.slow]\ntwin = { preset = "pcm", size = "16x16" }\nlink_bytes_per_s = 1000\n')
    result = runner.invoke(app, ["calibrate", "slow", "--config", str(config), "--data", str(tmp_path / "d"),
                                 "--json", "-q"])
    assert result.exit_code in (0, 1), result.output
    cost = json.loads(result.output)["steps"]["write_verify"]["cost"]
    assert cost["link_bytes_per_s"] == 1000 and cost["wire_s_at_link"] == pytest.approx(cost["wire_bytes"] / 1000)
