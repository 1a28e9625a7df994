"""Voice-agent platform on Ray Serve: application builder, ingress gateway, config and CLIs."""
