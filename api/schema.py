"""OpenAPI generation: every operation also documents the errors it can answer.

Why: clients (and the Schemathesis run in tests/api) must be able to rely on
the schema for every status code, not only the happy path. The error bodies
all share ``ErrorSerializer``'s shape.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        from api.serializers import ErrorSerializer

        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["401", "403"]
        is_list = self._is_list_view()
        if self.method in ("POST", "PUT", "PATCH") or is_list or (self.method == "GET" and "{" not in self.path):
            codes.append("400")
        if "{" in self.path or is_list:
            codes.append("404")
        if self.method in ("DELETE", "POST"):
            codes.append("409")
        for code in codes:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code, direction=direction))
        return responses
