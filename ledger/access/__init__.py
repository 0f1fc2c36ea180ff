"""Who may do what: roles, tokens, credentials, sessions, authority checked."""
