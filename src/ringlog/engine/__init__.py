"""The embedded matching engine: price-time priority books as the processor's business logic.

``records`` holds the binary command and report layouts shared with the gateway and tools.
"""
