"""arpwatchd: an ARP conflict-detection sensor that tells legitimate failover from conflict."""

__version__ = "0.1.0"
