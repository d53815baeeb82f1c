"""The nap protocol (docs/nap-protocol.md): the shared page, and the host's and guest's sides."""
