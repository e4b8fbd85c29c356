"""``python -m ringlog.cluster --cluster nats://… --dir DIR --replica-id a``: one replica of a
shard in this process (``ringlog.cluster.replica.main``)."""

import sys

from .replica import main

sys.exit(main())
