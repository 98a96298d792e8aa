"""Field types shared by the API's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime, PlainSerializer, StringConstraints

from fencewatch.timefmt import iso_time

# Written the one way fencewatch writes times: ISO-8601 UTC, milliseconds, "Z".
UtcTime = Annotated[datetime, PlainSerializer(iso_time, return_type=str)]

# The two ends of a required range [from, to) in a query string.
Since = Annotated[AwareDatetime, Query(alias="from", description="ISO-8601 with offset")]
Until = Annotated[AwareDatetime, Query(alias="to", description="ISO-8601 with offset")]

# Free text is kept in the case record and copied into the append-only audit log: long
# enough for any note an officer writes, too short for a request to bloat either.
TEXT_MAX = 2000
NAME_MAX = 200
LIST_MAX = 100  # zone ids, offices… named in one request
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]
