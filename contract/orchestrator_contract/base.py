"""What every message of the contract shares: a tolerant, frozen model, site ids, base64 data."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SiteId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class Model(BaseModel):
    # Tolerant reader: unknown fields are ignored so Director can add fields without breaking us.
    model_config = ConfigDict(frozen=True, extra="ignore")


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("data is standard base64") from None
    return value


Base64Data = Annotated[str, AfterValidator(_base64), Field(json_schema_extra={"contentEncoding": "base64"})]
