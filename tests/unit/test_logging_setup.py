"""Log lines are JSON, one per line; secrets are masked before anything reaches them."""

from __future__ import annotations

from orchestrator.logging_setup import mask


def test_every_secret_is_masked_longest_first() -> None:
    text = "token=abc123def user=abc123 again abc123def"
    assert mask(text, ["abc123", "abc123def", ""]) == "token=*** user=*** again ***"


def test_nothing_to_mask_leaves_the_text_as_it_is() -> None:
    assert mask("plain", []) == "plain"
