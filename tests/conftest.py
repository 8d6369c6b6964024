"""Shared test plumbing: the resilience suite's counts, printed at the end of the run."""

import collections

import pytest

_COUNTS = collections.Counter()


@pytest.fixture
def resilience():
    """Tests add to it: faults_injected / faults_survived, bad_inputs_tried / bad_inputs_rejected."""
    return _COUNTS


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        c = _COUNTS
        terminalreporter.write_line(
            f"resilience: faults injected {c['faults_injected']}, survived {c['faults_survived']}; "
            f"bad inputs tried {c['bad_inputs_tried']}, rejected cleanly {c['bad_inputs_rejected']}"
        )
