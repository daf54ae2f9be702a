"""Repository functions over a Session: users/projects, runs lifecycle, results, queries."""
