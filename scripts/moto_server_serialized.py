"""moto's server with its DynamoDB backend serialized.

moto serves each request on a thread of its own, and its DynamoDB model takes no lock:
a conditional write can be interleaved between its check and its write, and a
TransactWriteItems copies the whole table (failing with "dictionary changed size during
iteration" while another request writes) and, when canceled, restores that copy over
writes other requests made meanwhile. DynamoDB itself makes every item write and every
transaction atomic, and the store relies on it (conditional trail writes, the lease), so
the tests' local server must too: one lock around every backend operation. Requests are
still served concurrently; only the model's operations take turns. Transactions of Puts
are checked, then written, under that lock instead of through a copy of the table.
"""

import functools
import inspect
import threading

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()
_ORIGINAL_TRANSACT_WRITE_ITEMS = DynamoDBBackend.transact_write_items


def _transact_puts(self, transact_items):
    """TransactWriteItems of Puts without moto's copy of the whole table.

    moto deep-copies every table a transaction names, to restore it on failure: time and
    memory grow with the table (a few thousand trail records took many GiB). Under the
    lock nothing else runs, so checking every condition before writing anything is
    atomic without a copy. Other operations keep moto's own implementation.
    """
    if not all(set(item) == {"Put"} for item in transact_items):
        return _ORIGINAL_TRANSACT_WRITE_ITEMS(self, transact_items)
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen = set()
    errors = []
    for item in transact_items:
        op = item["Put"]
        table = self.get_table(op["TableName"])
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        identity = (op["TableName"], str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        current = self.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition,
            op.get("ExpressionAttributeNames"),
            op.get("ExpressionAttributeValues"),
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    for item in transact_items:
        self.put_item(item["Put"]["TableName"], item["Put"]["Item"])


DynamoDBBackend.transact_write_items = _transact_puts


def _serialized(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


for _name, _value in list(vars(DynamoDBBackend).items()):
    if inspect.isfunction(_value) and not _name.startswith("__"):
        setattr(DynamoDBBackend, _name, _serialized(_value))

if __name__ == "__main__":
    main()
