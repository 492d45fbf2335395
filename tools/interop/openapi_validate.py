"""Validates waevent's OpenAPI document with openapi-spec-validator, then validates
JSON instances (real gateway responses and webhook bodies) against its component
schemas with openapi-schema-validator's OAS 3.1 validator.

stdin:  {"document": {...}, "instances": [["SchemaName", instance], ...]}
stdout: {"results": [{"schema": name, "errors": [str, ...]}, ...]}
Exits non-zero (with the validator's message) when the document itself is invalid.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

req = json.load(sys.stdin)
doc = req["document"]
validate(doc)

results = []
for name, instance in req["instances"]:
    # The document is the root resource, so "#/components/..." references resolve;
    # its other keys (openapi, info, paths, ...) are not JSON Schema keywords.
    schema = dict(doc)
    schema["$ref"] = "#/components/schemas/" + name
    errors = sorted(e.message for e in OAS31Validator(schema).iter_errors(instance))
    results.append({"schema": name, "errors": errors})
json.dump({"results": results}, sys.stdout)
