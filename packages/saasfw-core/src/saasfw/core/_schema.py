"""The problem body's schema as a pydantic model, for OpenAPI documents.

Kept apart from the writer so that importing saasfw.core loads no pydantic: a concern
whose own import is kept cheap (audit, config) may use the writer freely.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ProblemDetails"]


class ProblemDetails(BaseModel):
    """The problem body's schema, for OpenAPI documents (``responses=``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:saasfw:problem:<code>")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="HTTP status code")
    code: str = Field(description="Stable, dotted machine-readable code")
    detail: str | None = Field(default=None, description="Explanation of this occurrence")
    instance: str | None = Field(default=None, description="The request path")
    correlation_id: str | None = Field(default=None, description="Request correlation id")
