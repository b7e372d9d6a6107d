"""Pydantic shapes of the bulk import API: the report `hostwarden import --json` prints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hostwarden.registry.bulk import ImportReport


class RowErrorOut(BaseModel):
    row: int = Field(description="1-based data row; a CSV header row is not counted.")
    column: str = Field(description="The column at fault, or '-' for the row as a whole.")
    problem: str


class ImportReportOut(BaseModel):
    kind: str
    total: int = Field(description="Rows read from the file.")
    created: int
    updated: int
    unchanged: int
    skipped: int = Field(description="Bad rows left out (skip_invalid only).")
    dry_run: bool
    written: bool = Field(description="Whether anything was committed.")
    errors: list[RowErrorOut]

    @classmethod
    def of(cls, report: ImportReport) -> ImportReportOut:
        return cls.model_validate(report.as_dict())
