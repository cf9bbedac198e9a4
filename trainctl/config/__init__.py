"""Config: YAML loading with source positions, pydantic schema, overrides, located errors."""
