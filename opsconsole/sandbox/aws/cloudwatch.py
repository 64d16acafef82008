"""The sandbox's own CloudWatch endpoint (awsJson1_0 and rpc-v2-cbor) over the metric store.

Why this file exists: moto's CloudWatch lacks percentiles and the CBOR protocol botocore may pick; this
HTTP server answers ``GetMetricData``/``GetMetricStatistics`` and plays the emulator's faults.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from opsconsole.sandbox.aws.cbor import _CborError, _Timestamp, cbor_decode, cbor_encode
from opsconsole.sandbox.aws.metrics import MetricStore, series_key
from opsconsole.sandbox.aws.naming import ACCOUNT_ID, CW_TARGET_PREFIX
from opsconsole.sandbox.emulator import FaultRequest, Faults, QuietHTTPServer

log = logging.getLogger(__name__)


_REGION_OF_AUTH = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
_KEY_OF_AUTH = re.compile(r"Credential=([^/]+)/")


class _CloudWatchHandler(BaseHTTPRequestHandler):
    """One CloudWatch call: awsJson1_0 (``X-Amz-Target``, what botocore picks today) or rpc-v2-cbor."""

    server: _CloudWatchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("cloudwatch %s", format % args)

    def _send(self, status: int, body: bytes, cbor: bool, extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        if cbor:
            self.send_header("Content-Type", "application/cbor")
            self.send_header("smithy-protocol", "rpc-v2-cbor")
        else:
            self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _encode(self, value: object, cbor: bool) -> bytes:
        return cbor_encode(value) if cbor else json.dumps(value).encode()

    def _error(self, status: int, code: str, message: str, cbor: bool) -> None:
        body = self._encode({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message}, cbor)
        fault = "Sender" if status < 500 else "Receiver"
        self._send(status, body, cbor, {"x-amzn-query-error": f"{code};{fault}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target")
        cbor = target is None
        if target is not None:
            prefix, _, operation = target.partition(".")
        else:
            match = re.match(r"^/service/([^/]+)/operation/([^/?]+)", self.path)
            prefix, operation = (match.group(1), match.group(2)) if match else ("", "")
        auth = self.headers.get("Authorization") or ""
        key, region_of = _KEY_OF_AUTH.search(auth), _REGION_OF_AUTH.search(auth)
        fault = self.server.faults.take(FaultRequest(
            client=key.group(1) if key else "", scope=region_of.group(1) if region_of else "",
            path=f"{prefix}.{operation}"))
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "slow":
            fault.stall()
        elif fault is not None and kind == "forbidden":
            code = str(fault.param("code", "AccessDenied"))
            self._error(403, code, f"User: arn:aws:iam::{ACCOUNT_ID}:user/sandbox is not authorized to "
                                   f"perform: cloudwatch:{operation} (sandbox fault)", cbor)
            return
        elif kind == "throttled":
            self._error(400, "ThrottlingException", "Rate exceeded (sandbox fault)", cbor)
            return
        if prefix != CW_TARGET_PREFIX:
            self._error(404, "UnknownOperationException", f"unknown operation {target or self.path}", cbor)
            return
        region_match = _REGION_OF_AUTH.search(self.headers.get("Authorization") or "")
        if region_match is None:
            self._error(403, "MissingAuthenticationToken", "request is not signed", cbor)
            return
        region = region_match.group(1)
        try:
            request = (cbor_decode(raw) if cbor else json.loads(raw or b"{}")) if raw else {}
            if not isinstance(request, dict):
                raise _CborError("the body is not a map")
        except (_CborError, struct.error, UnicodeDecodeError, ValueError) as exc:
            self._error(400, "SerializationException", f"cannot decode the request: {exc}", cbor)
            return
        try:
            if operation == "GetMetricData":
                result = self.server.get_metric_data(region, request)
            elif operation == "GetMetricStatistics":
                result = self.server.get_metric_statistics(region, request)
            else:
                self._error(400, "UnknownOperationException", f"{operation} is not served by the sandbox",
                            cbor)
                return
        except (KeyError, TypeError, ValueError) as exc:
            self._error(400, "InvalidParameterValue", f"{type(exc).__name__}: {exc}", cbor)
            return
        body = self._encode(result, cbor)
        if kind == "malformed":
            body = body[: max(1, len(body) // 2)]
        self._send(200, body, cbor)


class _CloudWatchServer(QuietHTTPServer):

    def __init__(self, port: int, store: MetricStore, faults: Faults) -> None:
        super().__init__(("127.0.0.1", port), _CloudWatchHandler)
        self.store = store
        self.faults = faults

    def get_metric_data(self, region: str, request: Mapping[str, Any]) -> dict[str, Any]:
        start = float(request["StartTime"])
        end = float(request["EndTime"])
        descending = request.get("ScanBy", "TimestampDescending") != "TimestampAscending"
        results: list[dict[str, Any]] = []
        messages: list[dict[str, str]] = []
        for q in request.get("MetricDataQueries", []):
            qid = str(q["Id"])
            if "MetricStat" not in q:
                messages.append({"Code": "Unsupported", "Value": f"{qid}: metric math is not served"})
                results.append({"Id": qid, "Label": qid, "Timestamps": [], "Values": [],
                                "StatusCode": "InternalError"})
                continue
            if q.get("ReturnData") is False:
                continue
            ms = q["MetricStat"]
            metric = ms["Metric"]
            dims = {str(d["Name"]): str(d["Value"]) for d in metric.get("Dimensions", [])}
            key = series_key(region, str(metric["Namespace"]), str(metric["MetricName"]), dims)
            points = self.store.query(key, str(ms["Stat"]), start, end, float(ms["Period"]))
            if descending:
                points.reverse()
            results.append(
                {
                    "Id": qid,
                    "Label": str(q.get("Label") or metric["MetricName"]),
                    "Timestamps": [_Timestamp(ts) for ts, _ in points],
                    "Values": [float(v) for _, v in points],
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": messages}

    def get_metric_statistics(self, region: str, request: Mapping[str, Any]) -> dict[str, Any]:
        dims = {str(d["Name"]): str(d["Value"]) for d in request.get("Dimensions", [])}
        key = series_key(region, str(request["Namespace"]), str(request["MetricName"]), dims)
        stats = [str(s) for s in request.get("Statistics", [])]
        stats += [str(s) for s in request.get("ExtendedStatistics", [])]
        start, end, period = float(request["StartTime"]), float(request["EndTime"]), float(request["Period"])
        by_ts: dict[float, dict[str, Any]] = {}
        for stat in stats:
            for ts, value in self.store.query(key, stat, start, end, period):
                dp = by_ts.setdefault(ts, {"Timestamp": _Timestamp(ts)})
                if stat.startswith("p"):
                    dp.setdefault("ExtendedStatistics", {})[stat] = float(value)
                else:
                    dp[stat] = float(value)
        return {"Label": str(request["MetricName"]), "Datapoints": [by_ts[t] for t in sorted(by_ts)]}
