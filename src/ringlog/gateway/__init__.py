"""The gateway: TCP clients reach the processor through length-prefixed msgspec frames."""
