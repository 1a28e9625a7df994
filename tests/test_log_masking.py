"""Log masking is set up by the platform's processes, never by an import, and it leaves figures alone."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from common.logs import log_masking_installed, mask_logs_in_this_process
from common.pii import mask_log_text

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_platform_changes_no_logging():
    """What Locust or a benchmark does: import deployments and serve_app, then log a table of numbers."""
    probe = (
        "import logging, deployments, deployments.session.actor, serve_app.gateway\n"
        "from common.logs import log_masking_installed\n"
        "root = logging.getLogger()\n"
        "record = logging.getLogRecordFactory()('x', 20, 'f', 1, 'row %s', ('4111 1111 1111 1111',), None)\n"
        "print(log_masking_installed(), root.filters, root.handlers, record.getMessage())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False [] [] row 4111 1111 1111 1111"


@pytest.fixture
def masking():
    factory = logging.getLogRecordFactory()
    mask_logs_in_this_process()
    mask_logs_in_this_process()  # twice is harmless
    yield
    logging.setLogRecordFactory(factory)


def test_after_set_up_a_card_phone_and_email_in_a_record_are_masked(masking, caplog):
    assert log_masking_installed()
    with caplog.at_level(logging.INFO):
        logging.getLogger("deployments.x").info(
            "caller %s gave card %s, phone %s, mail %s", "c1", "4111 1111 1111 1111", "(415) 555-0132", "jo@ex.com"
        )
    assert caplog.records[-1].getMessage() == "caller c1 gave card [CARD], phone [PHONE], mail [EMAIL]"


def test_after_set_up_figures_are_left_alone(masking, caplog):
    table = "voice_to_voice   12  0(0.00%) |  620  540  1479  2014 | 16000 bytes, took 1234567 ms, 0.4111111111111111 s"
    with caplog.at_level(logging.INFO):
        logging.getLogger("locust.stats").info("%s", table)
        logging.getLogger("serve_app.x").info("sizes 1234567890123 4000 8000 12000 16000 20000 24000")
    assert [r.getMessage() for r in caplog.records[-2:]] == [
        table,
        "sizes 1234567890123 4000 8000 12000 16000 20000 24000",
    ]


@pytest.mark.parametrize(
    "line, masked",
    [
        ("card 4111111111111111 ok", "card [CARD] ok"),  # contiguous, Luhn
        ("card 5500-0000-0000-0004.", "card [CARD]."),
        ("amex 3782 822463 10005, 3782 8224 6310 0051", "amex [CARD], 3782 8224 6310 0051"),  # the last fails Luhn
        (
            "phones 555-123-4567, +44 20 7946 0958, 212 555 0134, +14155550132",
            "phones [PHONE], [PHONE], [PHONE], [PHONE]",
        ),
        ("ssn 123-45-6789 and social security 123456789", "ssn [SSN] and social security [SSN]"),
        (
            "said four one one one one one one one one one one one one",
            "said [CARD]",
        ),  # spoken digits: as mask_pii judges them
        ("pin is 1234, a@b.com", "[PIN], [EMAIL]"),
        ("ValueError('card 4,111,111,111,111,111')", "ValueError('card [CARD]')"),  # Whisper's grouping
        ("x 4,111,111,111,112 and 1,234,567 bytes, 1,111,111,111,11", "x [CARD] and 1,234,567 bytes, 1,111,111,111,11"),
        ("took 4111111111111112 ns", "took 4111111111111112 ns"),  # fails Luhn: a figure
        ("ids 9111111111111111 and 250-1500 ms", "ids 9111111111111111 and 250-1500 ms"),
    ],
)
def test_log_lines_mask_numbers_by_shape(line, masked):
    assert mask_log_text(line) == masked
