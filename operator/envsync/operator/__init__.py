"""The operator process: kopf's handlers (each translates an event into one call and applies
what comes back), and the Prometheus metrics. The only package that imports kopf."""
