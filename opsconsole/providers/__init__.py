"""Fleet sources: one module per API surface, each implementing the FleetSource protocol."""
