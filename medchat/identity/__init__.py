"""Who is asking: bearer tokens, console sessions, TOTP enrolment and the principal a request
acts as, with the role keys it has opened."""
