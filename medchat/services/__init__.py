"""Domain services: plain Python over a session and the runtime, no Flask state."""
