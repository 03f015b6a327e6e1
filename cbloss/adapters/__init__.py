"""Framework adapters, one module per framework; each imports only its own framework."""
