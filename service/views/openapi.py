"""The OpenAPI 3.1 description of every JSON route (served at /openapi.json)."""

from __future__ import annotations

from functools import cache
from typing import Any

from indexer.core.matchkeys import DIFFERENCES
from indexer.core.records import DATA_CLASSES
from service.views.batch import MAX_REF_CHARS
from service.views.private import PRIVATE_OPENAPI_PATHS

__all__ = ["openapi_document"]

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _PROBLEM_REF}}}


_RATE_LIMITED = {
    "description": "Rate limited; retry after the number of seconds in Retry-After.",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
}


@cache
def openapi_document() -> dict[str, Any]:
    identity_fields = {
        "nir": {"type": "string", "maxLength": 64,
                "description": "Social security number (NIR), 13 or 15 characters."},
        "birth_date": {"type": "string", "maxLength": 32,
                       "description": "YYYY-MM-DD, DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY"},
        "last_name": {"type": "string", "maxLength": 256,
                      "description": "Birth name or usage name."},
        "first_name": {"type": "string", "maxLength": 256,
                       "description": "First given name (a composite name is one name)."},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exposure lookup",
            "version": "1.0.0",
            "description": "Was this person in the Viamedis/Almerys breach of January "
            "2024, and what of theirs leaked. Identifiers are never stored or echoed.",
        },
        "paths": {
            **PRIVATE_OPENAPI_PATHS,
            "/v1/check": {"post": {
                "operationId": "check",
                "summary": "One lookup (anonymous: rate limited per address)",
                "security": [{}, {"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CheckRequest"}}}},
                "responses": {
                    "200": {"description": "The verdict", "headers": {
                        "Cache-Control": {"schema": {"const": "no-store"}}},
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Verdict"}}}},
                    "400": _problem("Malformed JSON"),
                    "401": _problem("Unknown API key"),
                    "408": _problem("The body did not arrive in time; the connection is closed"),
                    "413": _problem("Body larger than 16 KiB"),
                    "415": _problem("Not application/json"),
                    "422": _problem("Invalid or incomplete identifiers"),
                    "429": _RATE_LIMITED,
                    "503": _problem("No index loaded yet"),
                },
            }},
            "/v1/check/batch": {"post": {
                "operationId": "checkBatch",
                "summary": "Bulk lookups: NDJSON or CSV in, NDJSON streamed out",
                "description": "NDJSON: one BatchRequestLine object per line. CSV: a header row "
                "naming the same fields (English or French names, ';' ',' or tab), then one "
                "member per row. UTF-8 (with or without a BOM) or Windows-1252. The answer "
                "has one BatchLine per non-blank data line, in order, then a summary line. "
                "OpenAPI 3.1 cannot describe a schema per line: `x-item-schema` holds it.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {
                    "application/x-ndjson": {
                        "schema": {"type": "string"},
                        "x-item-schema": {"$ref": "#/components/schemas/BatchRequestLine"}},
                    "text/csv": {"schema": {"type": "string"}},
                }},
                "responses": {
                    "200": {"description": "One line per input line, then a summary line",
                            "headers": {"Cache-Control": {"schema": {"const": "no-store"}}},
                            "content": {"application/x-ndjson": {
                                "schema": {"type": "string"},
                                "x-item-schema": {"$ref": "#/components/schemas/BatchLine"}}}},
                    "401": _problem("Missing or unknown API key"),
                    "408": _problem("The CSV header row did not arrive in time (a stall later "
                                    "ends the stream with a body_timeout error line)"),
                    "413": _problem("Body too large"),
                    "415": _problem("Not NDJSON or CSV"),
                    "422": _problem("CSV header row without the columns of a complete key"),
                    "429": _RATE_LIMITED,
                    "503": _problem("No index loaded yet"),
                },
            }},
            "/v1/sources": {"get": {
                "operationId": "sources", "summary": "The breaches in the index",
                "responses": {"200": {"description": "Sources", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Sources"}}}},
                    "503": _problem("No index loaded yet")},
            }},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": {"description": "Alive", "content": {
                                     "application/json": {"schema": {
                                         "$ref": "#/components/schemas/Health"}}}}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness",
                                "responses": {
                                    "200": {"description": "An index is loaded and verified; "
                                            "`detail` names a newer generation that was "
                                            "refused, if any", "content": {
                                                "application/json": {"schema": {
                                                    "$ref": "#/components/schemas/Ready"}}}},
                                    "503": {"description": "No index loaded", "content": {
                                        "application/json": {"schema": {
                                            "$ref": "#/components/schemas/NotReady"}}}}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Text exposition format",
                                                       "content": {"text/plain": {"schema": {
                                                           "type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "CheckRequest": {"type": "object", "properties": identity_fields},
                "BatchRequestLine": {"type": "object", "properties": {
                    **identity_fields,
                    "ref": {"type": ["string", "number"], "maxLength": MAX_REF_CHARS,
                            "description": "Your own reference, echoed as given."}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"const": "ok"},
                    "worker": {"type": "integer", "description": "Process id of the worker"}}},
                "Ready": {"type": "object",
                          "required": ["status", "generation", "fingerprints", "detail"],
                          "properties": {
                              "status": {"const": "ready"},
                              "generation": {"type": "string"},
                              "fingerprints": {"type": "integer", "minimum": 0},
                              "loaded_at": {"type": ["number", "null"]},
                              "detail": {"type": ["string", "null"]}}},
                "NotReady": {"type": "object", "required": ["status", "detail"], "properties": {
                    "status": {"const": "not_ready"}, "detail": {"type": ["string", "null"]}}},
                "DataClass": {"enum": list(DATA_CLASSES)},
                "SourceMatch": {
                    "type": "object",
                    "required": ["id", "title", "breach_date", "matched_on", "exposed"],
                    "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "breach_date": {"type": "string", "format": "date"},
                        "matched_on": {"type": "array", "items": {
                            "enum": ["nir", "birth_date", "last_name", "first_name"]}},
                        "exposed": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/DataClass"}},
                        "differences": {
                            "description": "Only on a `similar` match: the kinds of "
                                           "difference that allowed it.",
                            "type": "array", "minItems": 1,
                            "items": {"enum": list(DIFFERENCES)}},
                    },
                },
                "Verdict": {
                    "type": "object", "required": ["found", "match", "sources"],
                    "properties": {
                        "found": {"type": "boolean"},
                        "match": {"enum": ["strong", "weak", "similar", None]},
                        "sources": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/SourceMatch"}},
                    },
                },
                "FieldError": {
                    "type": "object", "required": ["field", "code", "message"],
                    "properties": {"field": {"type": ["string", "null"]},
                                   "code": {"type": "string"}, "message": {"type": "string"}},
                },
                "BatchLine": {"oneOf": [
                    {"type": "object", "required": ["line", "ref", "found", "match", "sources"],
                     "properties": {"line": {"type": "integer", "minimum": 1},
                                    "ref": {"type": ["string", "number", "null"]},
                                    "found": {"type": "boolean"},
                                    "match": {"enum": ["strong", "weak", "similar", None]},
                                    "sources": {"type": "array", "items": {
                                        "$ref": "#/components/schemas/SourceMatch"}}}},
                    {"type": "object", "required": ["line", "error"],
                     "properties": {"line": {"type": "integer", "minimum": 1},
                                    "ref": {"type": ["string", "number", "null"]},
                                    "error": {"$ref": "#/components/schemas/FieldError"}}},
                    {"type": "object", "required": ["summary"], "properties": {"summary": {
                        "type": "object", "required": ["lines", "found", "errors"],
                        "properties": {"lines": {"type": "integer"}, "found": {"type": "integer"},
                                       "errors": {"type": "integer"},
                                       "strong": {"type": "integer"},
                                       "weak": {"type": "integer"},
                                       "similar": {"type": "integer"}}}}},
                ]},
                "Sources": {"type": "object", "required": ["sources"], "properties": {
                    "generation": {"type": "string"},
                    "sources": {"type": "array", "items": {"type": "object", "required": [
                        "id", "title", "breach_date", "data_classes"], "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "breach_date": {"type": "string"}, "description": {"type": "string"},
                        "data_classes": {"type": "array", "items": {
                            "$ref": "#/components/schemas/DataClass"}},
                        "class_counts": {"type": "object",
                                         "additionalProperties": {"type": "integer"}},
                        "rows": {"type": "integer"}, "records_indexed": {"type": "integer"},
                    }}},
                }},
                "Problem": {
                    "type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"},
                        "errors": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/FieldError"}},
                    },
                },
            },
        },
    }
