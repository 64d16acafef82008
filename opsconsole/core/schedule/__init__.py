"""Non-production schedules: the two schedule syntaxes and the engine that sleeps and wakes environments."""
