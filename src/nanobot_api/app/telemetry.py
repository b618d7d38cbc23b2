"""Reporting to the Telemetry port: a null one when nothing listens, and timing helpers."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


class NoTelemetry:
    """A Telemetry that keeps nothing (a library user's app without /metrics)."""

    def turn_started(self) -> None:
        pass

    def turn_ended(
        self, seconds: float, first_token_s: float | None, outcome: str, tokens: int
    ) -> None:
        pass

    def session_waited(self, seconds: float) -> None:
        pass

    def model_called(self, status: str, seconds: float) -> None:
        pass

    def upload_accepted(self, kind: str) -> None:
        pass

    def span(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()


NO_TELEMETRY = NoTelemetry()
