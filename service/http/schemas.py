"""The answers every resource shares: errors, validation errors, health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str = Field(examples=["ok"])
    broker: str = Field(examples=["ok"])
    version: str


class ErrorOut(BaseModel):
    detail: str = Field(examples=["job 0123abcd not found"])


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "model", "n_embd"]])
    field: str = Field(description="Dotted field path.", examples=["model.n_embd"])
    msg: str = Field(examples=["n_embd (30) must be divisible by n_head (4); try n_embd=32"])
    type: str = Field(examples=["value_error"])


class ValidationErrorOut(BaseModel):
    detail: list[ValidationIssue]
