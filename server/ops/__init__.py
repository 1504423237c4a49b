"""The server watching itself and its host.

The psutil monitor, health hysteresis, the loopback probe and the Prometheus counters.
"""
