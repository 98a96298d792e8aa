"""Field types shared by the API's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer

from fencewatch.timefmt import iso_time

# Written the one way fencewatch writes times: ISO-8601 UTC, milliseconds, "Z".
UtcTime = Annotated[datetime, PlainSerializer(iso_time, return_type=str)]
