"""How large a reply of many items (a listing page, a log tail, a follow's batch) may grow: each
item's JSON is counted as it is added, so the whole stays within its budget
(`Settings.reply_budget_bytes`: a quarter of the broker's max_message_size at most). A site
controls what the items hold (names and link texts of control characters, which JSON writes six
bytes each; 16 KiB log lines), so a count of items alone bounds nothing."""

from __future__ import annotations

from pydantic import BaseModel

# The reply around its items: `{"ok":true,"result":{...}}`, a cursor, a stream id, a reason.
ENVELOPE_BYTES = 4096


class ReplySpace:
    """The room left in one reply."""

    def __init__(self, budget: int) -> None:
        self.left = budget - ENVELOPE_BYTES

    def take(self, item: BaseModel) -> bool:
        """Count `item` in if it fits (True); False, counting nothing, if it does not."""
        size = len(item.model_dump_json()) + 1  # and its comma
        if size > self.left:
            return False
        self.left -= size
        return True
