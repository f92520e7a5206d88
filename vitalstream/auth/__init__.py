"""Who is signed in and what they may do: users, roles, sessions (docs/station.md)."""
