"""On-prem emotional-intelligence appliance for call centers."""

__version__ = "0.1.0"
