"""PostgreSQL storage: versioned migrations and the connection pool."""
