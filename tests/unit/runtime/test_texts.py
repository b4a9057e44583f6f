"""The runtime's rule for kept text (docs/decisions/runtime-no-control-characters.md)."""

from __future__ import annotations

import pytest

from govmesh.texts import control_problem
from tests.support.people import CONTROL_AND_FORMAT_CHARACTERS


@pytest.mark.parametrize("character", CONTROL_AND_FORMAT_CHARACTERS)
def test_a_control_or_format_character_is_named_by_code_point_and_position(character: str) -> None:
    problem = control_problem("徐伟" + character + "x")
    assert problem is not None and f"U+{ord(character):04X} at character 3" in problem
    assert "徐伟" not in problem


def test_a_paragraph_keeps_newline_and_tab_and_nothing_else() -> None:
    assert control_problem("first line\n\tsecond", multiline=True) is None
    assert control_problem("first line\r\nsecond", multiline=True) == (
        "must not contain a control character (U+000D at character 11)"
    )


@pytest.mark.parametrize(
    "name",
    [
        "ئابدۇرېھىم\u200cتۇرسۇن",  # Uyghur in Arabic script, with a zero-width non-joiner
        "क्\u200dष",  # Devanagari with a zero-width joiner
        "王\u3000芳",  # an ideographic space is a space, not a control
        "Zoë Ørsted-Łukasz",
    ],
)
def test_the_joiners_some_scripts_are_written_with_are_kept(name: str) -> None:
    assert control_problem(name) is None
