"""Tools: the support backends, the shared circuit breaker, and the router that calls them."""
