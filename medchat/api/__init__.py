"""HTTP blueprints by audience: auth, member, clinician, compliance, admin, health."""
