"""Process lifecycle: graceful shutdown, health checks, metrics, systemd notification. Does I/O."""
