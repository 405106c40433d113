"""arpwatchd: an ARP conflict-detection sensor that tells legitimate failover from conflict."""

__version__ = "0.1.0"

DEFAULT_CONFIG = "/etc/arpwatchd/arpwatchd.yml"
"""The config the systemd unit in deploy/ runs with. The operator tools read it when no -c is
given (and it exists), so they find the store the service uses without being told. Here
rather than in `config`, so that building the command line's parsers imports no config code."""
