"""One sync, from source bytes to a report: the planner (desired × remote × owner → actions)
and the engine that streams the source through the parser and drives a sink with the plan.
Used alike by the operator and the CLI; nothing here knows about Kubernetes."""
