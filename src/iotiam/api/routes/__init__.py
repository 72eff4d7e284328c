"""HTTP routes, one module per resource; each handler decodes, calls the domain, renders."""
