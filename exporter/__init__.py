"""sessionpool exporter: serves session pool statistics as Prometheus metrics."""
