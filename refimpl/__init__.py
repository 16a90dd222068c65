"""refimpl: secure transformer inference, NEXUS (RNS-CKKS) and freeDiv (ABY3), from scratch."""

__version__ = "0.1.0"
