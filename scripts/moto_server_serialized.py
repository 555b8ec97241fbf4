"""moto's server with its DynamoDB backend serialized.

moto serves each request on a thread of its own, and its DynamoDB model takes no lock:
a conditional write can be interleaved between its check and its write, and a
TransactWriteItems copies the whole table (failing with "dictionary changed size during
iteration" while another request writes) and, when canceled, restores that copy over
writes other requests made meanwhile. DynamoDB itself makes every item write and every
transaction atomic, and the store relies on it (conditional trail writes, the lease), so
the tests' local server must too: one lock around every backend operation. Requests are
still served concurrently; only the model's operations take turns.
"""

import functools
import inspect
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()


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
