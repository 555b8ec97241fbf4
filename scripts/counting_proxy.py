#!/usr/bin/env python3
"""A counting proxy in front of a local DynamoDB-compatible server, for `make bench`.

It forwards every request to the server and counts, per operation (`X-Amz-Target`):
requests, items returned and the read and write units DynamoDB would bill, computed from
the items' sizes by DynamoDB's published rules (a local server's `ConsumedCapacity` is
not faithful). `GET /stats` returns the totals as JSON; `POST /reset` clears them.

Billing, as DynamoDB does: a strongly consistent read 1 unit per started 4 KB of each item
read by key, of each query page's items together; a `BatchGetItem` key that does not exist
1 unit; a write 1 unit per started KB of each item (a delete: of the item it removes,
counted here as 1); a transaction twice that. A `Query` of a global secondary index is
eventually consistent, half that.

Index writes (`index_write_units`), as DynamoDB bills a global secondary index: a write
that adds an item to an index, or removes one, 1 unit per started KB of the entry; one
that changes the entry's keys, two (a removal and an addition); one that leaves an item's
index keys as they were, nothing (every index of the table is keys only: its entries hold
nothing else to change); also per index (`index_write_units:<index>`). The proxy learns the indexes from the `CreateTable` it forwards
and keeps each indexed item's index keys from the writes it forwards, so it counts them
only for tables created through it. Transactions' index writes are counted once (DynamoDB
bills a transaction's index updates as standard writes).

Usage: counting_proxy.py LISTEN_PORT TARGET_URL [--emulate-transactions]

`--emulate-transactions` is for dynalite, which has no `TransactWriteItems`: the proxy
answers one itself from `BatchGetItem`s and `BatchWriteItem`s, for the only transactions the store
sends (puts on condition `attribute_not_exists(pk)`). All or nothing only while one client
writes a key at a time, which a benchmark's single invoker is; the units counted are the
transaction's, as DynamoDB would bill it.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS: dict = {}
# table -> [(index name, its key attributes)], from the CreateTable requests forwarded.
INDEXES: dict = {}
# (table, item key) -> {index name: its entry's size}, of the items in an index: what the
# next write of the same key changes.
ENTRIES: dict = {}


def size_of(value) -> int:
    """An attribute value's size by DynamoDB's rules (names counted by the caller)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(inner) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + size_of(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(name) + size_of(element) for name, element in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(element) for element in inner)
    return 0


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + size_of(value) for name, value in item.items())


def units(size: int, per: int) -> int:
    return max(1, -(-size // per))


def key_of(item: dict) -> str:
    return json.dumps([item.get("pk"), item.get("sk")], sort_keys=True)


def index_writes(table: str, key: str, item) -> dict:
    """The write units of each index of replacing the item at `key` with `item` (None:
    deleting it), and what the indexes then hold for it. Called under LOCK."""
    before = ENTRIES.get((table, key), {})
    after = {}
    for name, attributes in INDEXES.get(table, []):
        if item is not None and all(attribute in item for attribute in attributes):
            entry = {a: item[a] for a in {"pk", "sk", *attributes} if a in item}
            after[name] = (json.dumps(entry, sort_keys=True), item_size(entry))
    written = {}
    for name in set(before) | set(after):
        old, new = before.get(name), after.get(name)
        if old is not None and new is not None and old[0] == new[0]:
            continue
        written[name] = sum(units(entry[1], 1024) for entry in (old, new) if entry is not None)
    if after:
        ENTRIES[(table, key)] = after
    else:
        ENTRIES.pop((table, key), None)
    return written


def add(totals: dict, more: dict) -> None:
    for name, value in more.items():
        totals[name] = totals.get(name, 0) + value


def created(request: dict) -> None:
    indexes = [
        (index["IndexName"], [key["AttributeName"] for key in index["KeySchema"]])
        for index in request.get("GlobalSecondaryIndexes", [])
    ]
    with LOCK:
        INDEXES[request["TableName"]] = indexes


def account(operation: str, request: dict, response: dict) -> None:
    read_units = 0.0
    write_units = 0
    index_units = {}
    items = 0
    if operation == "CreateTable" and "__type" not in response:
        created(request)
    elif operation in ("Query", "Scan"):
        found = response.get("Items", [])
        items = len(found)
        read_units = units(sum(item_size(item) for item in found), 4096)
        if "IndexName" in request:
            read_units /= 2
    elif operation == "GetItem":
        found = [response["Item"]] if "Item" in response else []
        items = len(found)
        read_units = sum(units(item_size(item), 4096) for item in found) or 1
    elif operation == "BatchGetItem":
        asked = sum(len(table.get("Keys", [])) for table in request.get("RequestItems", {}).values())
        unprocessed = sum(
            len(table.get("Keys", [])) for table in response.get("UnprocessedKeys", {}).values()
        )
        found = [item for table in response.get("Responses", {}).values() for item in table]
        items = len(found)
        missing = max(0, asked - unprocessed - items)
        read_units = sum(units(item_size(item), 4096) for item in found) + missing
    elif operation == "PutItem":
        write_units = units(item_size(request.get("Item", {})), 1024)
        if "__type" not in response:
            item = request.get("Item", {})
            with LOCK:
                add(index_units, index_writes(request.get("TableName", ""), key_of(item), item))
    elif operation in ("DeleteItem", "UpdateItem"):
        # The store updates no attribute an index is keyed on.
        write_units = 1
        if operation == "DeleteItem" and "__type" not in response:
            with LOCK:
                add(
                    index_units,
                    index_writes(request.get("TableName", ""), key_of(request.get("Key", {})), None),
                )
    elif operation == "BatchWriteItem":
        unprocessed = response.get("UnprocessedItems", {})
        left = {
            json.dumps(entry, sort_keys=True)
            for table in unprocessed.values()
            for entry in table
        }
        for name, table in request.get("RequestItems", {}).items():
            for entry in table:
                if json.dumps(entry, sort_keys=True) in left:
                    continue
                if "PutRequest" in entry:
                    item = entry["PutRequest"]["Item"]
                    write_units += units(item_size(item), 1024)
                else:
                    item = None
                    write_units += 1
                key = key_of(item if item is not None else entry["DeleteRequest"]["Key"])
                with LOCK:
                    add(index_units, index_writes(name, key, item))
    elif operation == "TransactWriteItems":
        if "__type" not in response:
            for entry in request.get("TransactItems", []):
                put = entry.get("Put")
                write_units += 2 * (units(item_size(put["Item"]), 1024) if put else 1)
                if put:
                    with LOCK:
                        add(index_units, index_writes(put["TableName"], key_of(put["Item"]), put["Item"]))
    with LOCK:
        totals = STATS.setdefault(
            operation,
            {"requests": 0, "items": 0, "read_units": 0.0, "write_units": 0, "index_write_units": 0},
        )
        totals["requests"] += 1
        totals["items"] += items
        totals["read_units"] += read_units
        totals["write_units"] += write_units
        totals["index_write_units"] += sum(index_units.values())
        for name, written in index_units.items():
            field = "index_write_units:" + name
            totals[field] = totals.get(field, 0) + written


class Upstream:
    """One kept-alive connection to the server, for one client connection: a connection
    opened per forwarded request cost more than dynalite's answer to most of them."""

    # Below Node's default keep-alive timeout (5 s): an idle connection the server may
    # have closed is not reused.
    IDLE_SECONDS = 4.0

    def __init__(self, target: str):
        parsed = urllib.parse.urlsplit(target)
        self.host, self.port = parsed.hostname, parsed.port
        self.connection = None
        self.used = 0.0

    def forward(self, path: str, body: bytes, headers):
        """(status, payload, headers) of the request, under the client's headers (dynalite
        checks that a signature is there, not what it signs)."""
        kept = {
            name: value
            for name, value in headers
            if name.lower() not in ("host", "content-length", "connection")
        }
        if self.connection is not None and time.monotonic() - self.used > self.IDLE_SECONDS:
            self.connection.close()
            self.connection = None
        reused = self.connection is not None
        try:
            return self.exchange(path, body, kept)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # Closed by the server between two requests: it never read this one.
            if not reused:
                raise
            return self.exchange(path, body, kept)

    def exchange(self, path: str, body: bytes, headers: dict):
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            self.connection.request("POST", path, body, headers)
            answer = self.connection.getresponse()
            payload = answer.read()
        except Exception:
            self.connection.close()
            self.connection = None
            raise
        self.used = time.monotonic()
        return answer.status, payload, answer.getheaders()

    def call(self, headers, operation: str, request: dict):
        """One request of `operation` to the server: (status, payload, headers)."""
        headers = [(n, v) for n, v in headers if n.lower() != "x-amz-target"]
        headers.append(("X-Amz-Target", "DynamoDB_20120810." + operation))
        return self.forward("/", json.dumps(request).encode(), headers)


def emulated_transaction(upstream: Upstream, headers, request: dict):
    """A `TransactWriteItems` of conditional puts, as `BatchGetItem`s of their keys, then
    `BatchWriteItem`s of the puts: a few requests where one per item made a transaction
    of a hundred items take half a second."""
    json_type = [("Content-Type", "application/x-amz-json-1.0")]
    puts = [entry["Put"] for entry in request.get("TransactItems", [])]
    tables = {put["TableName"] for put in puts}
    stored = {}
    for table in tables:
        keys = [{"pk": put["Item"]["pk"], "sk": put["Item"]["sk"]} for put in puts if put["TableName"] == table]
        for at in range(0, len(keys), 100):
            asking = {table: {"Keys": keys[at : at + 100], "ConsistentRead": True}}
            while asking:
                status, payload, _ = upstream.call(headers, "BatchGetItem", {"RequestItems": asking})
                if status != 200:
                    return status, payload, json_type
                answer = json.loads(payload)
                for item in answer.get("Responses", {}).get(table, []):
                    stored[(table, key_of(item))] = item
                asking = answer.get("UnprocessedKeys") or None
    reasons = []
    for put in puts:
        found = stored.get((put["TableName"], key_of(put["Item"])))
        if found is not None:
            reason = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
            if put.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD":
                reason["Item"] = found
            reasons.append(reason)
        else:
            reasons.append({"Code": "None"})
    if any(reason["Code"] != "None" for reason in reasons):
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
            "CancellationReasons": reasons,
        }
        return 400, json.dumps(body).encode(), json_type
    for table in tables:
        writes = [{"PutRequest": {"Item": put["Item"]}} for put in puts if put["TableName"] == table]
        for at in range(0, len(writes), 25):
            writing = {table: writes[at : at + 25]}
            while writing:
                status, payload, _ = upstream.call(headers, "BatchWriteItem", {"RequestItems": writing})
                if status != 200:
                    return status, payload, json_type
                writing = json.loads(payload).get("UnprocessedItems") or None
    return 200, b"{}", json_type


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer longer than a segment ends in a short one, which Nagle's algorithm holds
    # until the client acknowledges the rest: its delayed acknowledgement, 40 ms.
    disable_nagle_algorithm = True
    target = ""
    emulate_transactions = False

    def setup(self):
        super().setup()
        self.upstream = Upstream(self.target)

    def finish(self):
        super().finish()
        if self.upstream.connection is not None:
            self.upstream.connection.close()

    def log_message(self, *args):  # quiet: the bench prints what matters
        pass

    def reply(self, status: int, body: bytes, headers=()) -> None:
        """The answer in one write (one system call, no short segment of headers alone)."""
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def do_GET(self):
        with LOCK:
            body = json.dumps(STATS).encode()
        self.reply(200, body, [("Content-Type", "application/json")])

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if self.path == "/reset":
            with LOCK:
                STATS.clear()
            self.reply(200, b"{}")
            return
        operation = (self.headers.get("X-Amz-Target") or "").split(".")[-1]
        if operation == "TransactWriteItems" and self.emulate_transactions:
            status, payload, headers = emulated_transaction(
                self.upstream, self.headers.items(), json.loads(body)
            )
        else:
            status, payload, headers = self.upstream.forward(self.path, body, self.headers.items())
        try:
            account(operation, json.loads(body or b"{}"), json.loads(payload or b"{}"))
        except (ValueError, KeyError, StopIteration):
            pass
        kept = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection", "transfer-encoding")]
        self.reply(status, payload, kept)


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2].rstrip("/")
    Proxy.target = target
    Proxy.emulate_transactions = "--emulate-transactions" in sys.argv[3:]
    server = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
    server.serve_forever()


if __name__ == "__main__":
    main()
