//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! Written by hand as a `serde_json` value rather than derived (e.g. with utoipa): the
//! routes speak two foreign APIs whose JSON shapes are fixed by Z-API and RyzeAPI, not
//! by our Rust types, and the document must say things no derive knows (the
//! `dateTime`/`timeZone` rule, exact error texts, signatures). A test checks that every
//! route of the router is documented, and the integration tests validate the document
//! with an independent OpenAPI validator.

use serde_json::{Value, json};

fn error_zapi(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ZapiError"}}}
    })
}

fn error_ryze(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RyzeError"}}}
    })
}

fn zapi_operation(summary: &str, description: &str, schema: &str, example: Value) -> Value {
    json!({
        "post": {
            "tags": ["Z-API"],
            "summary": summary,
            "description": description,
            "parameters": [
                {"$ref": "#/components/parameters/Instance"},
                {"$ref": "#/components/parameters/PathToken"},
                {"$ref": "#/components/parameters/ClientToken"},
                {"$ref": "#/components/parameters/IdempotencyKey"}
            ],
            "requestBody": {
                "required": true,
                "content": {"application/json": {
                    "schema": {"$ref": format!("#/components/schemas/{schema}")},
                    "example": example
                }}
            },
            "responses": {
                "200": {
                    "description": "Sent. `id` repeats `messageId` (Zapier compatibility).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ZapiSent"}}}
                },
                "400": error_zapi("Invalid body, phone, event fields or Idempotency-Key."),
                "401": error_zapi("Wrong instance token, or missing (`null not allowed`) or wrong Client-Token."),
                "404": error_zapi("Instance not found, or (edit/response) event message not found."),
                "405": error_zapi("Method other than POST."),
                "409": error_zapi("Idempotency-Key claimed by a request that did not finish."),
                "413": error_zapi("Body larger than the configured limit."),
                "415": error_zapi("Content-Type is not application/json."),
                "422": error_zapi("Idempotency-Key already used for a different request."),
                "500": error_zapi("`Failed to send event: <reason>`."),
                "503": error_zapi("`Instance is not connected to WhatsApp`.")
            }
        }
    })
}

/// The OpenAPI 3.1 document of every route, the webhook payloads and their signature.
pub fn document() -> Value {
    let location = json!({
        "type": "object",
        "description": "At least one of name, address or latitude+longitude.",
        "properties": {
            "name": {"type": "string"},
            "address": {"type": "string"},
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180}
        }
    });
    let time = json!({
        "oneOf": [
            {"type": "string", "description": "RFC3339 with an offset, e.g. 2026-04-28T14:00:00-03:00, or unix seconds as digits"},
            {"type": "integer", "minimum": 0, "description": "unix seconds"}
        ]
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "waevent gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "WhatsApp event cards and RSVPs through Z-API and RyzeAPI compatible routes.\n\n\
                **Times.** RyzeAPI `startAt`/`endAt` are RFC3339 with an offset (or unix seconds). Z-API `dateTime` \
                without an offset is a wall time in `timeZone` (`UTC-3`, `UTC+05:30`, `GMT+1`, `-03:00`), or UTC when \
                `timeZone` is absent; a `dateTime` with an offset (`Z` included) keeps it and `timeZone` is ignored.\n\n\
                **Idempotency-Key** (1–256 printable ASCII): a POST runs at most once per instance and key; repeats, \
                concurrent or after a restart, get the first response byte for byte with `Idempotent-Replayed: true`. \
                The key is freed when nothing was sent (not connected, event not found); the same key with another \
                request gets 422; a key whose request never finished gets 409.\n\n\
                **Webhooks** are signed: `X-Waevent-Signature: sha256=<hex HMAC-SHA256(webhook_secret, raw body)>`, \
                with `X-Waevent-Timestamp` (unix seconds of the attempt), `X-Waevent-Delivery` (job id), \
                `X-Waevent-Attempt` and `X-Waevent-Event`. Delivery is at least once: drop duplicates by the body's `id`. \
                Failed deliveries are retried with capped exponential backoff and survive restarts."
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "Z-API", "description": "Z-API compatible routes (token in the path, optional Client-Token header)."},
            {"name": "RyzeAPI", "description": "RyzeAPI compatible route (`token` header)."},
            {"name": "Gateway", "description": "Health, this document and the event stream."}
        ],
        "paths": paths(),
        "webhooks": webhooks(),
        "components": {
            "securitySchemes": {
                "RyzeToken": {"type": "apiKey", "in": "header", "name": "token"},
                "BearerToken": {"type": "http", "scheme": "bearer"},
                "QueryToken": {"type": "apiKey", "in": "query", "name": "token"}
            },
            "parameters": {
                "Instance": {"name": "instance", "in": "path", "required": true, "schema": {"type": "string"}},
                "PathToken": {"name": "token", "in": "path", "required": true, "schema": {"type": "string"},
                    "description": "The instance token."},
                "ClientToken": {"name": "Client-Token", "in": "header", "required": false, "schema": {"type": "string"},
                    "description": "Account security token; required when the instance has a client_token."},
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                    "description": "Runs the request at most once; repeats get the first response."}
            },
            "schemas": schemas(location, time),
        }
    })
}

fn paths() -> Value {
    json!({
        "/instances/{instance}/token/{token}/send-event": zapi_operation(
            "Send an event card",
            "Sends an event card to `phone` (a group id `<digits>-group`, a phone number or a JID).",
            "ZapiSendEvent",
            json!({"phone": "120363019502650977-group", "event": {"name": "Event name", "description": "Event description",
                "dateTime": "2024-04-29T09:30:53", "timeZone": "UTC-3", "location": {"name": "Place name"},
                "callLinkType": "voice", "canceled": false}})
        ),
        "/instances/{instance}/token/{token}/send-edit-event": zapi_operation(
            "Edit an event",
            "Replaces the event `eventMessageId` by `event`: send every field again, fields left out are removed \
             from the card. `canceled: true` cancels the event.",
            "ZapiSendEditEvent",
            json!({"phone": "120363019502650977-group", "eventMessageId": "3EB0C767D71D3D3E1A12",
                "event": {"name": "New name", "dateTime": "2024-04-30T10:00:00", "timeZone": "UTC-3", "canceled": false}})
        ),
        "/instances/{instance}/token/{token}/send-event-response": zapi_operation(
            "Answer an event",
            "Sends an RSVP to the event `eventMessageId`: `GOING` or `NOT_GOING` (Z-API), `MAYBE` or `NONE` \
             (withdraw) as extensions.",
            "ZapiSendEventResponse",
            json!({"phone": "120363019502650977-group", "eventMessageId": "3EB0C767D71D3D3E1A12", "eventResponse": "GOING"})
        ),
        "/api/message/event/{instance}": {
            "post": {
                "tags": ["RyzeAPI"],
                "summary": "Send an event card",
                "description": "Sends an event card to `number` (phone number, JID, or group JID `<id>@g.us`).",
                "security": [{"RyzeToken": []}],
                "parameters": [
                    {"$ref": "#/components/parameters/Instance"},
                    {"$ref": "#/components/parameters/IdempotencyKey"}
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/RyzeEventRequest"},
                        "example": {"number": "120363312345678901@g.us", "name": "Team meeting",
                            "description": "Quarterly planning", "startAt": "2026-04-28T14:00:00-03:00",
                            "endAt": "2026-04-28T16:00:00-03:00",
                            "location": {"name": "Room 3, HQ", "address": "Av. Paulista, 1000"},
                            "hasReminder": true, "reminderOffsetSec": 900}
                    }}
                },
                "responses": {
                    "200": {
                        "description": "Sent.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RyzeSuccess"}}}
                    },
                    "400": error_ryze("`Instance name is required`, `Invalid request body: <detail>`, `Number is required`, \
                        `Name is required`, `startAt is required`, `Invalid startAt, expected ISO 8601 (RFC3339): <detail>`, \
                        `Invalid phone number format: <detail>`, or another card validation text."),
                    "401": error_ryze("`Missing token in header` or `Invalid token`."),
                    "404": error_ryze("`Instance not found`."),
                    "405": error_ryze("Method other than POST."),
                    "409": error_ryze("Idempotency-Key claimed by a request that did not finish."),
                    "413": error_ryze("Body larger than the configured limit."),
                    "422": error_ryze("Idempotency-Key already used for a different request."),
                    "500": error_ryze("`Failed to send event: <reason>`."),
                    "503": error_ryze("`Instance is not connected to WhatsApp`.")
                }
            }
        },
        "/instances/{instance}/events": {
            "get": {
                "tags": ["Gateway"],
                "summary": "Stream incoming events (WebSocket)",
                "description": "Upgrade to a WebSocket; every frame is a text frame holding one `WebhookEvent`. The first \
                    frame is `{\"type\":\"stream.ready\",\"instance\":…}`; a client that falls behind gets \
                    `{\"type\":\"stream.lagged\",\"missed\":n}`. Live only: nothing is replayed. The token goes in the \
                    `token` header, `Authorization: Bearer`, or `?token=`.",
                "security": [{"RyzeToken": []}, {"BearerToken": []}, {"QueryToken": []}],
                "parameters": [{"$ref": "#/components/parameters/Instance"}],
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol."},
                    "401": error_zapi("Missing or wrong token."),
                    "404": error_zapi("Instance not found."),
                    "426": error_zapi("Not a WebSocket upgrade request.")
                }
            }
        },
        "/healthz": {
            "get": {
                "tags": ["Gateway"],
                "summary": "Liveness",
                "responses": {"200": {
                    "description": "The gateway runs.",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["status", "instances", "connected"],
                        "properties": {
                            "status": {"const": "ok"},
                            "instances": {"type": "integer", "description": "configured instances"},
                            "connected": {"type": "integer", "description": "instances connected to WhatsApp"}
                        }
                    }}}
                }}
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["Gateway"],
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {}}}}
            }
        }
    })
}

fn webhooks() -> Value {
    json!({
        "event": {
            "post": {
                "summary": "An incoming event, POSTed to the instance's webhook_url",
                "parameters": [
                    {"name": "X-Waevent-Signature", "in": "header", "required": true,
                     "description": "`sha256=` + hex HMAC-SHA256 of the raw body under the instance's webhook_secret.",
                     "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}},
                    {"name": "X-Waevent-Timestamp", "in": "header", "required": true, "schema": {"type": "string"},
                     "description": "Unix seconds of this attempt."},
                    {"name": "X-Waevent-Delivery", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-Waevent-Attempt", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-Waevent-Event", "in": "header", "required": true, "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
                "responses": {"2XX": {"description": "Delivered; any other answer is retried."}}
            }
        },
        "zapiReceivedCallBack": {
            "post": {
                "summary": "An incoming RSVP in Z-API's received-message shape, POSTed to zapi_webhook_url",
                "description": "Signed like the `event` webhook.",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ZapiReceivedCallBack"}}}},
                "responses": {"2XX": {"description": "Delivered; any other answer is retried."}}
            }
        }
    })
}

fn schemas(location: Value, time: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "ZapiEvent".into(),
        json!({
                    "type": "object",
                    "required": ["name", "dateTime"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "dateTime": {"type": "string", "description": "ISO 8601; without an offset it is read in timeZone (UTC when absent)."},
                        "timeZone": {"type": "string", "description": "UTC offset for a dateTime without one: UTC-3, UTC+05:30, GMT+1, -03:00.", "example": "UTC-3"},
                        "location": location.clone(),
                        "callLinkType": {"type": "string", "enum": ["voice", "video"]},
                        "canceled": {"type": "boolean"}
                    }
                }),
    );
    m.insert(
        "ZapiSendEvent".into(),
        json!({
                    "type": "object",
                    "required": ["phone", "event"],
                    "properties": {
                        "phone": {"type": "string", "description": "Group id `<digits>-group`, phone number, or JID."},
                        "event": {"$ref": "#/components/schemas/ZapiEvent"}
                    }
                }),
    );
    m.insert(
        "ZapiSendEditEvent".into(),
        json!({
            "type": "object",
            "required": ["phone", "eventMessageId", "event"],
            "properties": {
                "phone": {"type": "string"},
                "eventMessageId": {"type": "string"},
                "event": {"$ref": "#/components/schemas/ZapiEvent"}
            }
        }),
    );
    m.insert(
        "ZapiSendEventResponse".into(),
        json!({
            "type": "object",
            "required": ["phone", "eventMessageId", "eventResponse"],
            "properties": {
                "phone": {"type": "string"},
                "eventMessageId": {"type": "string"},
                "eventResponse": {"type": "string", "enum": ["GOING", "NOT_GOING", "MAYBE", "NONE"]}
            }
        }),
    );
    m.insert(
        "ZapiSent".into(),
        json!({
            "type": "object",
            "required": ["zaapId", "messageId", "id"],
            "properties": {
                "zaapId": {"type": "string"},
                "messageId": {"type": "string"},
                "id": {"type": "string"}
            }
        }),
    );
    m.insert(
        "ZapiError".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}}
        }),
    );
    m.insert(
        "RyzeEventRequest".into(),
        json!({
                    "type": "object",
                    "required": ["number", "name", "startAt"],
                    "properties": {
                        "number": {"type": "string", "description": "Phone number, JID (@s.whatsapp.net, @lid) or group JID (@g.us)."},
                        "name": {"type": "string"},
                        "startAt": time.clone(),
                        "endAt": time,
                        "description": {"type": "string"},
                        "location": location,
                        "joinLink": {"type": "string", "format": "uri"},
                        "callType": {"type": "string", "enum": ["voice", "video", "none"], "description": "Extension: ask for a call link of this kind when no joinLink is given."},
                        "isScheduleCall": {"type": "boolean"},
                        "hasReminder": {"type": "boolean"},
                        "reminderOffsetSec": {"type": "integer", "minimum": 0},
                        "extraGuestsAllowed": {"type": "boolean"},
                        "isCanceled": {"type": "boolean"},
                        "delay": {"type": "integer", "minimum": 0, "maximum": 300, "description": "Seconds of \"typing…\" before sending."},
                        "replyTo": {"type": "string", "description": "Id of a message to quote."},
                        "replyPrivate": {"type": "boolean"},
                        "source": {"type": "string", "maxLength": 64, "default": "api"}
                    }
                }),
    );
    m.insert(
        "RyzeSuccess".into(),
        json!({
            "type": "object",
            "required": ["success", "message", "status", "data"],
            "properties": {
                "success": {"const": true},
                "message": {"type": "string", "example": "Message sent successfully"},
                "status": {"type": "string", "example": "sent"},
                "data": {
                    "type": "object",
                    "required": ["messageId"],
                    "properties": {
                        "messageId": {"type": "string"},
                        "number": {"type": "string", "description": "The recipient JID."},
                        "messageType": {"const": "event"},
                        "content": {"type": "string", "description": "Text form of the card."},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "source": {"type": "string"}
                    }
                }
            }
        }),
    );
    m.insert(
        "RyzeError".into(),
        json!({
                    "type": "object",
                    "required": ["success", "error"],
                    "properties": {
                        "success": {"const": false},
                        "error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}
                    }
                }),
    );
    m.insert(
        "WebhookEvent".into(),
        json!({
                    "type": "object",
                    "required": ["id", "type", "instance", "createdAt", "data"],
                    "properties": {
                        "id": {"type": "string", "description": "Stable per event: drop duplicates by it."},
                        "type": {"type": "string", "enum": ["event.card", "event.rsvp", "event.edited", "event.canceled"]},
                        "instance": {"type": "string"},
                        "createdAt": {"type": "string", "format": "date-time"},
                        "data": {
                            "type": "object",
                            "description": "event.card: chat, messageId, sender, fromMe, time, event. event.rsvp: chat, messageId, \
                                eventMessageId, eventFromMe, eventCreator, voter, voterAlt, fromMe, response \
                                (GOING|NOT_GOING|MAYBE|NONE), extraGuests, time. event.edited: chat, messageId, \
                                eventMessageId, editor, time, event. event.canceled: chat, messageId, eventMessageId, \
                                editor, time. Times are unix milliseconds; `event` has RyzeAPI's field names.",
                            "properties": {
                                "chat": {"type": "string"},
                                "messageId": {"type": "string"},
                                "eventMessageId": {"type": "string"},
                                "response": {"type": "string", "enum": ["GOING", "NOT_GOING", "MAYBE", "NONE"]},
                                "time": {"type": "integer"},
                                "event": {"type": "object"}
                            }
                        }
                    }
                }),
    );
    m.insert(
        "ZapiReceivedCallBack".into(),
        json!({
                    "type": "object",
                    "required": ["type", "phone", "messageId", "eventResponse"],
                    "properties": {
                        "type": {"const": "ReceivedCallBack"},
                        "instanceId": {"type": "string"},
                        "messageId": {"type": "string"},
                        "phone": {"type": "string"},
                        "isGroup": {"type": "boolean"},
                        "fromMe": {"type": "boolean"},
                        "momment": {"type": "integer"},
                        "participantPhone": {"type": ["string", "null"]},
                        "participantLid": {"type": ["string", "null"]},
                        "senderLid": {"type": ["string", "null"]},
                        "eventResponse": {
                            "type": "object",
                            "required": ["response", "responseFrom", "time", "referencedMessage"],
                            "properties": {
                                "response": {"type": "string", "enum": ["GOING", "NOT_GOING", "MAYBE", "NONE"]},
                                "responseFrom": {"type": "string"},
                                "time": {"type": "integer"},
                                "referencedMessage": {
                                    "type": "object",
                                    "properties": {
                                        "messageId": {"type": "string"},
                                        "fromMe": {"type": "boolean"},
                                        "phone": {"type": "string"},
                                        "participant": {"type": ["string", "null"]}
                                    }
                                }
                            }
                        }
                    }
                }),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/instances/{instance}/token/{token}/send-event",
            "/instances/{instance}/token/{token}/send-edit-event",
            "/instances/{instance}/token/{token}/send-event-response",
            "/api/message/event/{instance}",
            "/instances/{instance}/events",
            "/healthz",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        // Every $ref points at something that exists.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        if k == "$ref" {
                            out.push(v.as_str().unwrap_or_default().to_string());
                        } else {
                            refs(v, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20);
        for r in all {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }
}
