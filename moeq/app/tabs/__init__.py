"""One builder per tab; each takes the shared AppServices and returns the components others use."""
