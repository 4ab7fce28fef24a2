"""Router policies, their registry and the rules that rank models per query class."""
