"""The message bus between nodes: typed messages, in-process (default) and Redis Streams.

See ``messages`` for the stream naming scheme ``hftkit:<kind>:<venue>:<symbol>``, ``base`` for
the protocol, ``memory`` and ``redis_streams`` for the two implementations and ``books`` for
books published by a feed node and rebuilt by strategy nodes.
"""

from hftkit.bus.base import BusStatus, MessageBus, StreamStatus
from hftkit.bus.memory import InProcessBus
from hftkit.bus.messages import BusMessage, stream_name

__all__ = ["BusMessage", "BusStatus", "InProcessBus", "MessageBus", "StreamStatus", "stream_name"]
