"""renderer: consumes render requests and writes renditions."""
